"""Command line: flags in Prometheus exporter style, subcommands, and nothing else.

Parses, builds the objects, and hands over: the daemon (default), ``demo`` (simulator plus
exporter in one process), ``probe`` (one probe now, printed; ``exporter/cli_probe.py``) and
``simulator`` (the embedded Ollama simulator on its own, for demos and tests in other
processes). ``help [SUBCOMMAND]`` prints the help.

The global flags ``--web.listen-address``, ``--log.level`` and ``--log.format`` are accepted
before and after the subcommand and the later one wins: they are declared on every parser with
a ``SUPPRESS`` default, so a parser only sets what was actually given, and each subcommand's
default is filled in afterwards. A global flag that a subcommand cannot use is refused rather
than silently ignored.

Only what ``--config.check`` needs is imported at module level: the daemon (APScheduler,
httpx) and the prober are imported by the subcommand that runs them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from exporter import __version__
from exporter.config import ConfigError, ProbeProfile, describe, format_duration, load_settings
from exporter.config.values import DEFAULT_OPTIONS, THINK_LEVELS
from exporter.logs import FORMATS, LEVELS, setup_logging

PROG = "ollama-probe-exporter"
DEFAULT_PORT = 10434
DEFAULT_LISTEN = f":{DEFAULT_PORT}"
DEMO_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
# Not Ollama's own 11434: a simulator started by hand must not take the place of (or fail
# against) a real Ollama on the same machine. Equal to ``exporter.simulator.DEFAULT_PORT``
# (a test checks); not imported, so the command line stays light.
SIMULATOR_LISTEN = "127.0.0.1:10435"
DEFAULT_LOG_LEVEL = "info"
DEFAULT_LOG_FORMAT = "logfmt"
# 128 + SIGPIPE: what a shell reports for a program whose reader went away (`| head`).
EXIT_BROKEN_PIPE = 141

# Where each global flag's value lives, the flag's name, and its default per subcommand
# (None: the daemon). A subcommand missing from a default table does not take that flag.
_GLOBAL_FLAGS: dict[str, tuple[str, dict[str | None, str]]] = {
    "listen": (
        "--web.listen-address",
        {None: DEFAULT_LISTEN, "demo": DEMO_LISTEN, "simulator": SIMULATOR_LISTEN},
    ),
    "log_level": (
        "--log.level",
        dict.fromkeys((None, "demo", "probe", "simulator"), DEFAULT_LOG_LEVEL),
    ),
    "log_format": (
        "--log.format",
        dict.fromkeys((None, "demo", "probe", "simulator"), DEFAULT_LOG_FORMAT),
    ),
}


class UsageError(Exception):
    """Flag values that cannot be used: one line each on stderr, exit code 2."""

    def __init__(self, *lines: str) -> None:
        self.lines = lines
        super().__init__(*lines)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def parse_listen_address(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[IPv6]:PORT`` → (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--web.listen-address: expected HOST:PORT, got {value!r}")
    host = host.strip("[]")
    return (host or "0.0.0.0", int(port_text))


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show ``(default: …)`` where there is a default worth showing, and keep epilogs as written.

    Flags without a value (``--json``) or without a default (``--config.file``) get none; the
    global flags spell theirs out, because their parsers default to ``SUPPRESS``.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool) or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def _add_global_flags(parser: argparse.ArgumentParser, command: str | None) -> None:
    for dest, (flag, defaults) in _GLOBAL_FLAGS.items():
        if command not in defaults:
            continue
        default = defaults[command]
        if dest == "listen":
            parser.add_argument(
                flag, dest=dest, default=argparse.SUPPRESS, metavar="HOST:PORT",
                help=f"address to listen on, [::1]:PORT for IPv6 (default: {default})",
            )  # fmt: skip
        elif dest == "log_level":
            parser.add_argument(
                flag, dest=dest, default=argparse.SUPPRESS, choices=tuple(LEVELS),
                help=f"least severe log level written to stderr (default: {default})",
            )  # fmt: skip
        else:
            parser.add_argument(
                flag, dest=dest, default=argparse.SUPPRESS, choices=FORMATS,
                help=f"log line format; text is another name for logfmt (default: {default})",
            )  # fmt: skip


def _add_probe_flags(probe: argparse.ArgumentParser) -> None:
    """The ``probe`` flags; defaults are read from the config model, so they match the daemon."""
    fields = ProbeProfile.model_fields
    probe.add_argument("--url", required=True, help="Ollama base URL, e.g. http://127.0.0.1:11434")
    probe.add_argument("--model", required=True, help="model to probe, e.g. llama3.2:1b")
    probe.add_argument(
        "--api",
        choices=("generate", "chat", "openai"),
        default=fields["api"].default,
        help="endpoint: /api/generate, /api/chat or the OpenAI-compatible /v1/chat/completions",
    )
    probe.add_argument(
        "--no-stream",
        dest="stream",
        action="store_false",
        help="ask for one JSON answer instead of a stream (no time to first token then)",
    )
    probe.add_argument("--prompt", default=fields["prompt"].default, help="prompt to send")
    probe.add_argument(
        "--prompt-tokens",
        type=int,
        metavar="N",
        help="pad the prompt with built-in text to about N tokens (prefill); default: the "
        "prompt as it is",
    )
    probe.add_argument(
        "--parallel",
        type=int,
        default=fields["parallel"].default,
        metavar="N",
        help="streams sent at once; each is measured, and their aggregate tokens/s",
    )
    probe.add_argument(
        "--max-tokens",
        type=int,
        default=fields["max_tokens"].default,
        metavar="N",
        help="tokens to generate (sent as options.num_predict)",
    )
    probe.add_argument(
        "--timeout",
        default=format_duration(fields["timeout"].default),
        metavar="DURATION",
        help="deadline for the whole probe",
    )
    probe.add_argument(
        "--stall-timeout",
        default=format_duration(fields["stall_timeout"].default),
        metavar="DURATION",
        help="longest gap between chunks",
    )
    probe.add_argument(
        "--think",
        choices=("true", "false", *THINK_LEVELS),
        help="ask for thinking (true/false) or a thinking level; by default "
        "think is not sent and the model decides",
    )
    defaults = ", ".join(f"{k}={v}" for k, v in DEFAULT_OPTIONS.items())
    probe.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="an Ollama option, repeatable; VALUE is read as JSON if it parses, else as a "
        f"string; added to the defaults {defaults}",
    )
    probe.add_argument(
        "--header",
        action="append",
        metavar="'NAME: VALUE'",
        help="request header, repeatable; VALUE env:VAR reads the variable VAR, file:PATH the "
        "file PATH (never printed)",
    )
    probe.add_argument(
        "--ca-file",
        type=Path,
        metavar="PATH",
        help="extra CA bundle to verify an https target with",
    )
    probe.add_argument(
        "--insecure-skip-verify",
        action="store_true",
        help="do not verify the https target's certificate",
    )
    probe.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=_HelpFormatter,
        description="Prometheus exporter that runs scheduled streaming probe generations against\n"
        f"Ollama servers. Default listen address {DEFAULT_LISTEN} (port {DEFAULT_PORT}).",
        epilog="--web.listen-address, --log.level and --log.format may also come after the "
        "subcommand;\nthe later one wins. 'help SUBCOMMAND' shows a subcommand's flags.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config.file", dest="config_file", type=Path, metavar="PATH",
                        help="YAML config file")  # fmt: skip
    parser.add_argument(
        "--config.check", dest="config_check", action="store_true",
        help="validate the config, print a summary and exit (1 on error)",
    )  # fmt: skip
    parser.add_argument(
        "--web.config.file", dest="web_config_file", type=Path, metavar="PATH",
        help="exporter-toolkit web config: TLS, basic auth, response headers (docs/security.md)",
    )  # fmt: skip
    parser.add_argument(
        "--web.enable-lifecycle", dest="enable_lifecycle", action="store_true",
        help="allow reloading the config with POST /-/reload (SIGHUP always works)",
    )  # fmt: skip
    _add_global_flags(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="{demo,probe,simulator,help}")
    commands: dict[str, argparse.ArgumentParser] = {}

    def add(name: str, text: str) -> argparse.ArgumentParser:
        commands[name] = sub.add_parser(
            name, help=text, description=text[0].upper() + text[1:] + ".",
            formatter_class=_HelpFormatter,
        )  # fmt: skip
        return commands[name]

    _add_global_flags(add("demo", "run the exporter against the embedded Ollama simulator"), "demo")
    probe = add("probe", "run one probe now and print the result (exit 1 if it failed)")
    _add_probe_flags(probe)
    _add_global_flags(probe, "probe")
    simulator = add("simulator", "serve the embedded Ollama simulator")
    _add_global_flags(simulator, "simulator")
    simulator.add_argument("--script", type=Path, metavar="FILE",
                           help="YAML file: models: {name: {field: value}}; default: the demo "
                           "models")  # fmt: skip
    add("help", "show the help of the program or of one subcommand").add_argument(
        "topic", nargs="?", choices=tuple(commands), metavar="SUBCOMMAND"
    )
    return parser, commands


def _join_dash_values(argv: Sequence[str], parsers: Sequence[argparse.ArgumentParser]) -> list[str]:
    """Rewrite ``--timeout -5s`` as ``--timeout=-5s``.

    argparse takes any value starting with ``-`` for a flag and reports "expected one
    argument"; joined, the value reaches validation and gets a message about the value.
    A following token that is itself a flag (or an abbreviation of one) is left alone.
    """
    takes_value: set[str] = set()
    known: set[str] = set()
    for parser in parsers:
        for action in parser._actions:
            known.update(action.option_strings)
            if action.option_strings and action.nargs is None:
                takes_value.update(action.option_strings)

    def is_flag(token: str) -> bool:
        name = token.split("=", 1)[0]
        if token.startswith("--"):
            return token == "--" or any(k.startswith(name) for k in known if k.startswith("--"))
        return token[:2] in known

    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            out.extend(argv[i:])
            break
        if token in takes_value and i + 1 < len(argv):
            value = argv[i + 1]
            joined = value.startswith("-") and len(value) > 1 and not is_flag(value)
            out.extend([f"{token}={value}"] if joined else [token, value])
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def _resolve_global_flags(args: argparse.Namespace) -> None:
    """Fill in the subcommand's defaults; refuse a global flag the subcommand has no use for."""
    command = args.command
    for dest, (flag, defaults) in _GLOBAL_FLAGS.items():
        if command not in defaults:
            if hasattr(args, dest):
                raise UsageError(f"{flag} does not apply to '{command}'")
            continue
        if not hasattr(args, dest):
            setattr(args, dest, defaults[command])
    if command is not None:
        daemon_only = {
            "--config.file": args.config_file,
            "--config.check": args.config_check,
            "--web.config.file": args.web_config_file,
            "--web.enable-lifecycle": args.enable_lifecycle,
        }
        for flag, given in daemon_only.items():
            if given:
                raise UsageError(f"{flag} does not apply to '{command}'")


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
        if args.web_config_file is not None:
            from exporter.web.config import WebConfigError, load_web_config  # noqa: PLC0415

            try:
                load_web_config(args.web_config_file)
            except WebConfigError as err:
                print(err, file=sys.stderr)
                return 1
        print(describe(settings))
        for warning in settings.warnings():
            print(f"warning: {warning}")
        return 0
    host, port = parse_listen_address(args.listen)
    setup_logging(args.log_level, args.log_format)
    from exporter.daemon import Daemon  # noqa: PLC0415 (keep `--config.check` light)
    from exporter.web import WebConfigError  # noqa: PLC0415

    try:
        daemon = Daemon(
            settings,
            listen=(host, port),
            config_path=args.config_file,
            web_config_file=args.web_config_file,
            enable_lifecycle=args.enable_lifecycle,
        )
    except WebConfigError as err:
        print(err, file=sys.stderr)
        return 1
    except OSError as err:
        print(
            f"--web.listen-address: cannot listen on {args.listen}: {err.strerror}", file=sys.stderr
        )
        return 1
    asyncio.run(daemon.run())
    return 0


def _run_probe(args: argparse.Namespace) -> int:
    from exporter.cli_probe import run_probe_command  # noqa: PLC0415 (imports httpx)

    setup_logging(args.log_level, args.log_format)
    return run_probe_command(args)


def _run_simulator(args: argparse.Namespace) -> int:
    from exporter.simulator.cli import run_simulator  # noqa: PLC0415

    listen = parse_listen_address(args.listen)
    setup_logging(args.log_level, args.log_format)
    return run_simulator(listen, args.script)


def _run_demo(args: argparse.Namespace) -> int:
    from exporter.demo import run_demo  # noqa: PLC0415

    listen = parse_listen_address(args.listen)
    setup_logging(args.log_level, args.log_format)
    return run_demo(listen)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv`` with every default filled in; ``UsageError`` if flags contradict.

    For ``help``, ``help_text`` holds the text to print.
    """
    parser, commands = _build_parser()
    args = parser.parse_args(_join_dash_values(argv, [parser, *commands.values()]))
    if args.command == "help":
        args.help_text = (commands[args.topic] if args.topic else parser).format_help()
        return args
    _resolve_global_flags(args)
    return args


def _main(argv: Sequence[str]) -> int:
    run: dict[str | None, Callable[[argparse.Namespace], int]] = {
        None: _run_daemon, "demo": _run_demo, "probe": _run_probe, "simulator": _run_simulator,
    }  # fmt: skip
    try:
        args = parse_args(argv)
        if args.command == "help":
            print(args.help_text, end="")
            return 0
        return run[args.command](args)
    except UsageError as err:
        for line in err.lines:
            print(f"{PROG}: {line}", file=sys.stderr)
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
            return _main(sys.argv[1:] if argv is None else argv)
        finally:
            sys.stdout.flush()  # here, not at interpreter exit, where the error is unhandled
    except BrokenPipeError:
        # Later writes (the interpreter's final flush included) go nowhere instead of failing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
