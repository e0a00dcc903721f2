"""``ollama-probe-exporter probe``: the flags as settings, one probe now, printed.

Uses exactly the daemon's prober and definitions, so a number printed here means what the
same metric means on ``/metrics``. The flags are validated by the config model, with the same
rules as a config file; its problems, keyed like ``targets[0].url``, are translated back to the
flag that carried the value (``--url``), since whoever reads them never wrote a config file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
from typing import Any

from exporter.cli import UsageError
from exporter.clock import SystemClock
from exporter.config import ConfigError, JobSpec, Settings, build_settings
from exporter.config.values import DEFAULT_OPTIONS
from exporter.ollama.client import OllamaClient
from exporter.report import result_dict, stream_dicts
from exporter.result import ProbeResult
from exporter.runner import SIMULATOR_WARNING
from exporter.workload import run_streams

PROFILE_NAME = "cli"
SECRET_PREFIXES = ("env", "file")

# Config key → the flag that set it; the more specific key first.
_KEY_FLAGS = (
    ("targets[0].url", "--url"),
    ("targets[0].name", "--url"),  # derived from the url
    ("targets[0].models", "--model"),
    ("targets[0].headers", "--header"),
    ("targets[0].tls.ca_file", "--ca-file"),
    ("targets[0].tls.insecure_skip_verify", "--insecure-skip-verify"),
    ("targets[0].tls", "--ca-file/--insecure-skip-verify"),
    ("probes[0].api", "--api"),
    ("probes[0].stream", "--no-stream"),
    ("probes[0].prompt_tokens", "--prompt-tokens"),
    ("probes[0].prompt", "--prompt"),
    ("probes[0].max_tokens", "--max-tokens"),
    ("probes[0].parallel", "--parallel"),
    ("probes[0].timeout", "--timeout"),
    ("probes[0].stall_timeout", "--stall-timeout"),
    ("probes[0].think", "--think"),
    ("probes[0].options", "--option"),
)
# pydantic's wording for the numeric bounds the config model leaves to it.
_REWORDS = (
    (re.compile(r"Input should be greater than or equal to (\S+)"), r"must be >= \1"),
    (re.compile(r"Input should be greater than (\S+)"), r"must be > \1"),
    (re.compile(r"Input should be less than or equal to (\S+)"), r"must be <= \1"),
)


def flag_problem(line: str) -> str:
    """``probes[0].max_tokens: Input should be …`` → ``--max-tokens: must be >= 1``.

    A header or option name after the key stays with the flag (``--header X-Token: …``).
    A line about no particular flag is returned as it is.
    """
    key, sep, message = line.partition(": ")
    for pattern, replacement in _REWORDS:
        message = pattern.sub(replacement, message)
    for config_key, flag in _KEY_FLAGS:
        if key == config_key or key.startswith((config_key + "[", config_key + ".")):
            rest = key[len(config_key) :]
            name = rest[1:] if rest.startswith(".") else ""
            return f"{flag} {name}{sep}{message}" if name else f"{flag}{sep}{message}"
    return f"{key}{sep}{message}"


def _headers(values: list[str] | None) -> dict[str, Any]:
    """``Name: value`` flags → the config's headers; ``env:VAR``/``file:PATH`` become mappings.

    No message here shows a value: it may be the secret itself.
    """
    headers: dict[str, Any] = {}
    for item in values or ():
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not name:
            raise UsageError("--header: expected 'NAME: VALUE' (value not shown)")
        if name.lower() in (n.lower() for n in headers):
            raise UsageError(f"--header {name}: given twice (header names are case-insensitive)")
        value = value.strip()
        kind, colon, ref = value.partition(":")
        headers[name] = {kind: ref.strip()} if colon and kind in SECRET_PREFIXES else value
    return headers


def _json_or_string(text: str) -> Any:
    """A JSON value if ``text`` is one (``0.5``, ``true``, ``["\\n"]``), else the text itself."""

    def refuse(constant: str) -> Any:
        raise ValueError(constant)  # NaN and Infinity are not JSON for Ollama

    try:
        return json.loads(text, parse_constant=refuse)
    except ValueError:
        return text


def _options(values: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` flags added to (or replacing one of) the default options."""
    options = dict(DEFAULT_OPTIONS)
    for item in values or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option: expected KEY=VALUE, got {item!r}")
        options[key.strip()] = _json_or_string(text)
    return options


def probe_settings(args: argparse.Namespace) -> Settings:
    """Settings for one probe, validated like a config file; ``UsageError`` naming the flags."""
    target: dict[str, Any] = {"url": args.url, "models": [args.model]}
    if headers := _headers(args.header):
        target["headers"] = headers
    tls: dict[str, Any] = {}
    if args.ca_file is not None:
        tls["ca_file"] = args.ca_file
    if args.insecure_skip_verify:
        tls["insecure_skip_verify"] = True
    if tls:
        target["tls"] = tls
    profile: dict[str, Any] = {
        "name": PROFILE_NAME,
        "api": args.api,
        "stream": args.stream,
        "prompt": args.prompt,
        "max_tokens": args.max_tokens,
        "parallel": args.parallel,
        "timeout": args.timeout,
        "stall_timeout": args.stall_timeout,
        "options": _options(args.option),
    }
    if args.think is not None:
        profile["think"] = args.think
    if args.prompt_tokens is not None:
        profile["prompt_tokens"] = args.prompt_tokens
    try:
        return build_settings({"targets": [target], "probes": [profile]})
    except ConfigError as err:
        raise UsageError(*(flag_problem(p) for p in err.problems)) from None


async def probe_once(spec: JobSpec) -> ProbeResult:
    """Warm the client with ``/api/version`` (errors ignored: the probe reports them), then
    send the profile's ``parallel`` streams (one by default).

    A target that turns out to be the exporter's own simulator gets the daemon's warning on
    stderr: its numbers are synthetic, which whoever reads them should know.
    """
    client = OllamaClient(spec.target)
    try:
        with contextlib.suppress(Exception):
            if (await client.version()).is_simulator:
                print(f"warning: {SIMULATOR_WARNING}", file=sys.stderr)
        return await run_streams(client, spec, SystemClock())
    finally:
        await client.aclose()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_result(result: ProbeResult, *, as_json: bool) -> None:
    """The run's values; for a parallel run, each stream's after them (JSON: ``streams``)."""
    data = result_dict(result)
    streams = stream_dicts(result)
    if as_json:
        print(json.dumps({**data, "streams": streams} if streams else data, indent=2))
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        print(f"{key:<{width}}  {_fmt(value)}")
    for i, stream in enumerate(streams, start=1):
        print(f"\nstream {i}")
        for key, value in stream.items():
            if key not in ("target", "model", "probe") and value is not None:
                print(f"  {key:<{width}}  {_fmt(value)}")


def run_probe_command(args: argparse.Namespace) -> int:
    """Probe once and print; 0 if the probe succeeded, 1 if it failed."""
    settings = probe_settings(args)
    for warning in settings.warnings():
        print(f"warning: {flag_problem(warning)}", file=sys.stderr)
    result = asyncio.run(probe_once(settings.jobs()[0]))
    print_result(result, as_json=args.json)
    return 0 if result.success else 1
