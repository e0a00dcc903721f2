"""``ollama-probe-exporter probe``: one probe now, printed as a table or as JSON.

Uses exactly the daemon's prober and definitions, so a number printed here means what the
same metric means on ``/metrics``.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from exporter.clock import SystemClock
from exporter.config import JobSpec
from exporter.ollama.client import OllamaClient
from exporter.probe import run_probe
from exporter.report import result_dict
from exporter.result import ProbeResult


async def probe_once(spec: JobSpec) -> ProbeResult:
    """Warm the client with ``/api/version`` (errors ignored: the probe reports them), probe."""
    client = OllamaClient(spec.target)
    try:
        with contextlib.suppress(Exception):
            await client.version()
        return await run_probe(client, spec, SystemClock())
    finally:
        await client.aclose()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_result(result: ProbeResult, *, as_json: bool) -> None:
    data = result_dict(result)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        print(f"{key:<{width}}  {_fmt(value)}")
