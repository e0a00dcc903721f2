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
from exporter.result import NS_PER_S, ProbeResult


async def probe_once(spec: JobSpec) -> ProbeResult:
    """Warm the client with ``/api/version`` (errors ignored: the probe reports them), probe."""
    client = OllamaClient(spec.target)
    try:
        with contextlib.suppress(Exception):
            await client.version()
        return await run_probe(client, spec, SystemClock())
    finally:
        await client.aclose()


def _seconds(ns: int | None) -> float | None:
    return None if ns is None else ns / NS_PER_S


def result_dict(result: ProbeResult) -> dict[str, Any]:
    """Every measured value, in base units, under the metric-style names."""
    server = result.server
    return {
        "target": result.job.target,
        "model": result.job.model,
        "probe": result.job.probe,
        "success": result.success,
        "reason": None if result.reason is None else result.reason.value,
        "detail": result.detail,
        "http_status": result.http_status,
        "time_to_first_token_seconds": _seconds(result.ttft_ns),
        "duration_seconds": _seconds(result.elapsed_ns),
        "output_tokens": result.output_tokens,
        "tokens_from_chunks": result.tokens_from_chunks,
        "text_chunks": result.text_chunks,
        "tokens_per_second": result.tokens_per_second,
        "time_per_output_token_seconds": result.time_per_output_token_seconds,
        "server_tokens_per_second": result.server_tokens_per_second,
        "prompt_tokens_per_second": result.prompt_tokens_per_second,
        "load_duration_seconds": None if server is None else server.load_duration_ns / NS_PER_S,
        "done_reason": None if server is None else server.done_reason,
    }


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
