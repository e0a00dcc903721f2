"""Configuration: the YAML file plus ``OLLAMA_PROBE_*`` variables, validated into frozen Settings.

``load_settings`` builds it (every problem at once, as ``ConfigError``); ``Settings.jobs()`` is
the scheduled work, ``Settings.warnings()`` the non-fatal notes, ``describe`` the check summary.
"""

from exporter.config.loader import ConfigError, build_settings, describe, load_settings
from exporter.config.models import ENV_PREFIX, JobSpec, ProbeProfile, Settings, Target, TLSSettings
from exporter.config.values import format_duration, parse_duration

__all__ = [
    "ENV_PREFIX",
    "ConfigError",
    "JobSpec",
    "ProbeProfile",
    "Settings",
    "TLSSettings",
    "Target",
    "build_settings",
    "describe",
    "format_duration",
    "load_settings",
    "parse_duration",
]
