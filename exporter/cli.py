"""Command line: flags in Prometheus exporter style, subcommands, and nothing else.

Parses, builds the objects, and hands over: the daemon (default), ``demo`` (simulator plus
exporter in one process), ``probe`` (one probe now, printed) and ``simulator`` (the embedded
Ollama simulator on its own, for demos and tests in other processes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from exporter import __version__
from exporter.config import ConfigError, Settings, describe, load_settings
from exporter.logs import FORMATS, LEVELS, setup_logging

DEFAULT_PORT = 10434
DEFAULT_LISTEN = f":{DEFAULT_PORT}"
DEMO_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
# 128 + SIGPIPE: what a shell reports for a program whose reader went away (`| head`).
EXIT_BROKEN_PIPE = 141


class UsageError(Exception):
    """A flag value that cannot be used; printed as one line, exit code 2."""


def parse_listen_address(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[IPv6]:PORT`` → (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--web.listen-address: expected HOST:PORT, got {value!r}")
    host = host.strip("[]")
    return (host or "0.0.0.0", int(port_text))


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ollama-probe-exporter",
        description="Prometheus exporter that runs scheduled streaming probe generations "
        f"against Ollama servers. Default listen address {DEFAULT_LISTEN} (port {DEFAULT_PORT}).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config.file", dest="config_file", type=Path, help="YAML config file")
    parser.add_argument(
        "--config.check", dest="config_check", action="store_true",
        help="validate the config, print a summary and exit (1 on error)",
    )  # fmt: skip
    parser.add_argument(
        "--web.listen-address", dest="listen", default=DEFAULT_LISTEN,
        help=f"address to serve /metrics on (default {DEFAULT_LISTEN})",
    )  # fmt: skip
    _add_log_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="{demo,probe,simulator}")

    demo = sub.add_parser("demo", help="run the exporter against the embedded Ollama simulator")
    demo.add_argument("--web.listen-address", dest="listen", default=DEMO_LISTEN)
    _add_log_flags(demo)

    probe = sub.add_parser("probe", help="run one probe now and print the result")
    probe.add_argument("--url", required=True, help="Ollama base URL, e.g. http://127.0.0.1:11434")
    probe.add_argument("--model", required=True)
    probe.add_argument("--api", choices=("generate", "chat"), default="generate")
    probe.add_argument("--prompt", default=None, help="prompt (default: the built-in story prompt)")
    probe.add_argument("--max-tokens", type=int, default=64)
    probe.add_argument("--timeout", default="300s", help="whole-probe deadline (default 300s)")
    probe.add_argument("--stall-timeout", default="30s", help="longest gap between chunks")
    probe.add_argument("--json", action="store_true", help="print JSON instead of a table")

    simulator = sub.add_parser("simulator", help="serve the embedded Ollama simulator")
    simulator.add_argument("--web.listen-address", dest="listen", default="127.0.0.1:11434")
    simulator.add_argument("--script", type=Path, help="YAML file: models: {name: {field: value}}")
    _add_log_flags(simulator)
    return parser


def _add_log_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log.level", dest="log_level", choices=tuple(LEVELS), default="info")
    parser.add_argument("--log.format", dest="log_format", choices=FORMATS, default="text")


def _print_problems(err: ConfigError) -> int:
    for problem in err.problems:
        print(problem, file=sys.stderr)
    return 1


def _run_daemon(args: argparse.Namespace) -> int:
    if args.config_file is None and not any(
        k.upper().startswith("OLLAMA_PROBE_") for k in os.environ
    ):
        raise UsageError("--config.file is required (or OLLAMA_PROBE_* environment variables)")
    try:
        settings = load_settings(args.config_file)
    except ConfigError as err:
        return _print_problems(err)
    if args.config_check:
        print(describe(settings))
        for warning in settings.warnings():
            print(f"warning: {warning}")
        return 0
    setup_logging(args.log_level, args.log_format)
    host, port = parse_listen_address(args.listen)
    from exporter.daemon import Daemon  # noqa: PLC0415 (keep `--config.check` light)

    try:
        daemon = Daemon(settings, listen=(host, port), config_path=args.config_file)
    except OSError as err:
        print(
            f"--web.listen-address: cannot listen on {args.listen}: {err.strerror}", file=sys.stderr
        )
        return 1
    asyncio.run(daemon.run())
    return 0


def _one_probe_settings(args: argparse.Namespace) -> Settings:
    """Settings for ``probe``, validated by the same rules as a config file."""
    profile: dict[str, Any] = {
        "name": "cli",
        "api": args.api,
        "max_tokens": args.max_tokens,
        "timeout": args.timeout,
        "stall_timeout": args.stall_timeout,
    }
    if args.prompt is not None:
        profile["prompt"] = args.prompt
    environ: Mapping[str, str] = {
        "OLLAMA_PROBE_TARGETS": json.dumps([{"url": args.url, "models": [args.model]}]),
        "OLLAMA_PROBE_PROBES": json.dumps([profile]),
    }
    return load_settings(None, environ)


def _run_probe(args: argparse.Namespace) -> int:
    from exporter.one_probe import print_result, probe_once  # noqa: PLC0415

    try:
        settings = _one_probe_settings(args)
    except ConfigError as err:
        return _print_problems(err)
    result = asyncio.run(probe_once(settings.jobs()[0]))
    print_result(result, as_json=args.json)
    return 0 if result.success else 1


def _run_simulator(args: argparse.Namespace) -> int:
    from exporter.simulator.cli import run_simulator  # noqa: PLC0415

    setup_logging(args.log_level, args.log_format)
    return run_simulator(parse_listen_address(args.listen), args.script)


def _run_demo(args: argparse.Namespace) -> int:
    from exporter.demo import run_demo  # noqa: PLC0415

    setup_logging(args.log_level, args.log_format)
    return run_demo(parse_listen_address(args.listen))


def _main(argv: Sequence[str] | None) -> int:
    args = _build_parser().parse_args(argv)
    commands = {"demo": _run_demo, "probe": _run_probe, "simulator": _run_simulator}
    try:
        return commands.get(args.command, _run_daemon)(args)
    except UsageError as err:
        print(f"ollama-probe-exporter: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (2: unusable flags).

    A reader that goes away early (``probe … | head -3``) ends the program quietly with 141,
    as a program killed by SIGPIPE would, instead of with a BrokenPipeError traceback.
    """
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # here, not at interpreter exit, where the error is unhandled
    except BrokenPipeError:
        # Later writes (the interpreter's final flush included) go nowhere instead of failing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
