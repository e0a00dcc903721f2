"""Load, validate and summarise the configuration: the entry points behind ``exporter.config``.

File, env and model problems are all raised together as one ``ConfigError``, whose lines are the
same at start-up, for ``--config.check`` and for a refused reload.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import InitSettingsSource, PydanticBaseSettingsSource

from exporter.config.models import PROBLEMS_ERROR, Settings
from exporter.config.sources import ConfigFileSource, EnvironmentSource, format_path, walk
from exporter.config.values import CURRENT_LOAD, format_duration, redact_url


class ConfigError(Exception):
    """Every problem found in a configuration, one ``<key path>: <message>`` line each.

    Key paths look like ``targets[0].url``; env problems are keyed by the variable name and
    file problems by ``config.file``. No line ever contains a header secret.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__(*self.problems)

    def __str__(self) -> str:
        return "\n".join(self.problems)


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the YAML file at ``path`` (or none) and ``OLLAMA_PROBE_*`` variables.

    ``environ`` defaults to ``os.environ``; when given, the process environment is not read at
    all, ``{env: VAR}`` headers included. Relative paths start at the config file's folder.
    """
    environ = os.environ if environ is None else environ
    file = ConfigFileSource(Settings, path)
    env = EnvironmentSource(Settings, environ, file.data)
    problems = [*file.problems, *env.problems]
    if not file.usable:  # validating what an unusable file left would only add noise
        raise ConfigError(problems)
    base_dir = None if path is None else path.absolute().parent
    return _validate((env, file), environ, base_dir, problems)


def build_settings(
    data: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Settings:
    """Validate settings given as plain data (the ``probe`` flags, the demo), no file, no env.

    The rules and messages of a config file; ``environ`` is only read by ``{env: VAR}`` header
    values, ``base_dir`` resolves relative paths.
    """
    environ = os.environ if environ is None else environ
    return _validate((InitSettingsSource(Settings, dict(data)),), environ, base_dir, [])


def _validate(
    sources: tuple[PydanticBaseSettingsSource, ...],
    environ: Mapping[str, str],
    base_dir: Path | None,
    problems: list[str],
) -> Settings:
    """Build Settings from ``sources`` as the load of ``environ`` and ``base_dir``."""
    token = CURRENT_LOAD.set((environ, base_dir))
    try:
        settings = Settings(_build_sources=(sources, {}))
    except ValidationError as exc:
        problems = [*problems, *_validation_problems(exc)]
    finally:
        CURRENT_LOAD.reset(token)
    if problems:
        # `from None`: a chained ValidationError would print the raw input, secrets included.
        raise ConfigError(problems) from None
    return settings


# pydantic speaks of tuples, dictionaries and model instances; a YAML author writes lists and
# mappings, and mostly gets a string wrong because YAML 1.1 turned it into a bool or a number.
_TYPE_MESSAGES = {
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a mapping (key: value)",
    "model_type": "must be a mapping (key: value)",
    "string_type": "must be a string (quote it: YAML reads yes/no/on/off and numbers otherwise)",
}


def _validation_problems(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        if error["type"] == PROBLEMS_ERROR:
            for sub, message in error["ctx"]["problems"]:
                lines.append(f"{format_path((*error['loc'], *sub))}: {message}")
        else:
            lines.append(f"{format_path(error['loc']) or 'config'}: {_message(error)}")
    return lines


def _message(error: ErrorDetails) -> str:
    """Reword pydantic's generic messages where a config author needs something more exact."""
    kind = error["type"]
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    if kind == "extra_forbidden":  # only models forbid extras: the key's parent is one
        *_, model = walk(Settings, [str(key) for key in error["loc"][:-1]])
        return f"unknown key; known: {', '.join(model.model_fields)}"
    if kind == "missing":
        return "required key is missing"
    return _TYPE_MESSAGES.get(kind, error["msg"])


def describe(settings: Settings) -> str:
    """Summarise the settings for ``--config.check``: header names only, never their values."""
    lines = [f"targets ({len(settings.targets)}):"]
    for target in settings.targets:
        lines.append(f"  {target.name}: {target.url} concurrency={target.concurrency}")
        lines.append(f"    models: {', '.join(target.models)}")
        if target.headers:
            lines.append(f"    headers: {', '.join(target.headers)} (values hidden)")
        if target.proxy is not None:
            lines.append(f"    proxy: {redact_url(target.proxy)}")
        tls = target.tls
        if tls.ca_file is not None or tls.insecure_skip_verify:
            skip = str(tls.insecure_skip_verify).lower()
            lines.append(f"    tls: ca_file={tls.ca_file} insecure_skip_verify={skip}")
    lines.append(f"probe profiles ({len(settings.probes)}):")
    for profile in settings.probes:
        workload = f"parallel={profile.parallel} when={profile.when}"
        if profile.prompt_tokens is not None:
            workload = f"prompt_tokens={profile.prompt_tokens} {workload}"
        if profile.keep_alive is not None:
            workload += f" keep_alive={json.dumps(profile.keep_alive)}"
        lines.append(
            f"  {profile.name}: api={profile.api} stream={json.dumps(profile.stream)}"
            f" interval={format_duration(profile.interval)}"
            f" timeout={format_duration(profile.timeout)}"
            f" stall_timeout={format_duration(profile.stall_timeout)}"
            f" max_tokens={profile.max_tokens} think={json.dumps(profile.think)}"
        )
        lines.append(f"    {workload}")
        if profile.options:
            lines.append(f"    options: {json.dumps(dict(profile.options), sort_keys=True)}")
    lines.append(f"jobs: {len(settings.jobs())} (targets x models x profiles)")
    return "\n".join(lines)
