"""Build validated JobSpecs for tests through the real config validation (``build_settings``),
and probe one with a client of its own."""

from __future__ import annotations

from typing import Any

from exporter.clock import SystemClock
from exporter.config import JobSpec, Settings, build_settings
from exporter.ollama.client import OllamaClient
from exporter.probe import run_probe
from exporter.result import ProbeResult


def make_settings(
    url: str, models: list[str], *, target: dict[str, Any] | None = None, **profile: Any
) -> Settings:
    """Settings with one target and one profile named ``p``; profile keys as in YAML."""
    return build_settings(
        {
            "targets": [{"name": "sim", "url": url, "models": models, **(target or {})}],
            "probes": [{"name": "p", **profile}],
        },
        environ={},
    )


def make_job(url: str, model: str, **profile: Any) -> JobSpec:
    """The single job of ``make_settings(url, [model], **profile)``."""
    return make_settings(url, [model], **profile).jobs()[0]


async def probe_job(job: JobSpec) -> ProbeResult:
    """One probe of ``job`` on a client built for it and closed after."""
    client = OllamaClient(job.target)
    try:
        return await run_probe(client, job, SystemClock())
    finally:
        await client.aclose()
