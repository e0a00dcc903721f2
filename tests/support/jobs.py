"""Build validated JobSpecs for tests through the real config validation (``build_settings``)."""

from __future__ import annotations

from typing import Any

from exporter.config import JobSpec, Settings, build_settings


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
