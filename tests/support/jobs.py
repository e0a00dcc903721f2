"""Build validated JobSpecs for tests through the real config loader (env-style input)."""

from __future__ import annotations

import json
from typing import Any

from exporter.config import JobSpec, Settings, load_settings


def make_settings(
    url: str, models: list[str], *, target: dict[str, Any] | None = None, **profile: Any
) -> Settings:
    """Settings with one target and one profile named ``p``; profile keys as in YAML."""
    environ = {
        "OLLAMA_PROBE_TARGETS": json.dumps(
            [{"name": "sim", "url": url, "models": models, **(target or {})}]
        ),
        "OLLAMA_PROBE_PROBES": json.dumps([{"name": "p", **profile}]),
    }
    return load_settings(None, environ)


def make_job(url: str, model: str, **profile: Any) -> JobSpec:
    """The single job of ``make_settings(url, [model], **profile)``."""
    return make_settings(url, [model], **profile).jobs()[0]
