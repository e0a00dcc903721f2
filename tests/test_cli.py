"""The command line: --config.check output and exit codes, flags, help, and the probe subcommand."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from exporter.cli import (
    DEFAULT_LISTEN,
    DEFAULT_PORT,
    DEMO_LISTEN,
    EXIT_BROKEN_PIPE,
    SIMULATOR_LISTEN,
    UsageError,
    _build_parser,
    main,
    parse_args,
    parse_listen_address,
)
from exporter.cli_probe import probe_settings
from exporter.simulator import ModelScript, OllamaSimulator
from tests.support.processes import free_port, running_process

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "example.yml"
PROBE = ["probe", "--url", "http://127.0.0.1:9", "--model", "m"]
SECRET = "s3cret-value"


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """Subcommands configure the root logger; later tests must not write to this test's capture."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_config_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    """A valid file: summary on stdout, exit 0."""
    code = main(["--config.file", str(EXAMPLE), "--config.check"])
    out = capsys.readouterr().out
    assert code == 0
    assert "gpu-box-1" in out


@pytest.mark.parametrize(
    ("yaml_text", "first_line"),
    [
        (
            "targets:\n  - url: http://h:1\n    models: [m]\n    concurency: 2\n",
            "targets[0].concurency:",
        ),
        (
            "targets:\n  - url: http://h:1\n    models: [m]\nprobes:\n  - name: p\n    interval: 5 minutes\n",
            "probes[0].interval:",
        ),
        ("targets: []\n", "targets:"),
    ],
)
def test_config_check_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], yaml_text: str, first_line: str
) -> None:
    """A bad file: one line per problem on stderr naming the key, exit 1."""
    path = tmp_path / "c.yml"
    path.write_text(yaml_text)
    code = main(["--config.file", str(path), "--config.check"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[0].startswith(first_line), err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config path that does not exist is one readable line, exit 1."""
    code = main(["--config.file", str(tmp_path / "nope.yml"), "--config.check"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1
    assert err[0].startswith("config.file:")


@pytest.mark.e2e  # a real process
def test_config_check_stays_light() -> None:
    """--config.check imports neither the daemon nor APScheduler nor httpx: it must run fast
    in a pre-start hook or CI job, and must not depend on what only serving needs."""
    code = (
        "import sys\n"
        "from exporter.cli import main\n"
        f"code = main(['--config.file', {str(EXAMPLE)!r}, '--config.check'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('apscheduler', 'httpx')"
        " or m == 'exporter.daemon')\n"
        "print('HEAVY', code, heavy, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "HEAVY 0 []" in done.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [(":10434", ("0.0.0.0", 10434)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9", ("::1", 9))],
)
def test_listen_address(text: str, expected: tuple[str, int]) -> None:
    """HOST:PORT, :PORT and [v6]:PORT are understood."""
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize("text", ["10434", "host:", "h:99999", "h:x"])
def test_bad_listen_address(text: str) -> None:
    """Anything else is a usage error."""
    with pytest.raises(UsageError):
        parse_listen_address(text)


def test_default_port_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    """--help states the default port, which is the one the code uses."""
    with pytest.raises(SystemExit):
        main(["--help"])
    assert f":{DEFAULT_PORT}" in capsys.readouterr().out


# --- global flags -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "listen", "level", "fmt"),
    [
        ([], DEFAULT_LISTEN, "info", "logfmt"),
        (["demo"], DEMO_LISTEN, "info", "logfmt"),
        (["simulator"], SIMULATOR_LISTEN, "info", "logfmt"),
        (
            ["--web.listen-address", "127.0.0.1:10999", "--log.level", "debug", "demo"],
            "127.0.0.1:10999",
            "debug",
            "logfmt",
        ),
        (["demo", "--web.listen-address", "127.0.0.1:1", "--log.format", "json"],
         "127.0.0.1:1", "info", "json"),
        (["--log.level", "debug", "demo", "--log.level", "error"], DEMO_LISTEN, "error", "logfmt"),
        (["--web.listen-address", "h:1", "simulator", "--web.listen-address", "h:2"],
         "h:2", "info", "logfmt"),
        (["--log.format", "text", "simulator"], SIMULATOR_LISTEN, "info", "text"),
    ],
)  # fmt: skip
def test_global_flags_before_or_after_the_subcommand(
    argv: list[str], listen: str, level: str, fmt: str
) -> None:
    """Global flags apply wherever they stand; given twice, the later one wins."""
    args = parse_args(argv)
    assert (args.listen, args.log_level, args.log_format) == (listen, level, fmt)


@pytest.mark.parametrize("where", ["before", "after"])
def test_log_flags_on_probe(where: str) -> None:
    """`probe` takes the log flags too, before or after the subcommand."""
    flags = ["--log.level", "debug", "--log.format", "json"]
    args = parse_args(flags + PROBE if where == "before" else PROBE + flags)
    assert (args.log_level, args.log_format) == ("debug", "json")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--web.listen-address", "127.0.0.1:1", *PROBE],
            "--web.listen-address does not apply to 'probe'",
        ),
        (["--config.file", "c.yml", "demo"], "--config.file does not apply to 'demo'"),
        (["--config.check", "simulator"], "--config.check does not apply to 'simulator'"),
    ],
)
def test_global_flag_a_subcommand_cannot_use_is_refused(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """A flag that would be silently ignored is a usage error instead: one line, exit 2."""
    assert main(argv) == 2
    assert capsys.readouterr().err == f"ollama-probe-exporter: {message}\n"


@pytest.mark.e2e  # a real process
def test_demo_uses_global_flags_given_before_it() -> None:
    """`--web.listen-address … --log.level debug demo` listens there and logs at debug."""
    port = free_port()
    argv = [sys.executable, "-m", "exporter", "--web.listen-address", f"127.0.0.1:{port}",
            "--log.level", "debug", "demo"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_PROBE_")}
    with running_process(argv, f"http://127.0.0.1:{port}/metrics", env=env) as (_, log_path):
        deadline = time.monotonic() + 20
        while "level=debug" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "level=debug" in log_path.read_text()


def test_simulator_does_not_default_to_ollamas_port() -> None:
    """A simulator started by hand must not take a real Ollama's port (11434)."""
    assert parse_args(["simulator"]).listen == SIMULATOR_LISTEN
    assert parse_listen_address(SIMULATOR_LISTEN)[1] not in (11434, DEFAULT_PORT)


# --- help -------------------------------------------------------------------------------------


def test_help_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    """`help` prints what --help prints, `help probe` the probe flags; exit 0."""
    with pytest.raises(SystemExit):
        main(["--help"])
    dash_help = capsys.readouterr().out
    assert main(["help"]) == 0
    assert capsys.readouterr().out == dash_help
    assert main(["help", "probe"]) == 0
    assert "--max-tokens" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["help", "nonsense"])
    assert exc.value.code == 2


def test_every_flag_with_a_default_shows_it() -> None:
    """Each flag's help states its default, and the stated default is the one used."""
    parser, commands = _build_parser()
    minimal_argv = {None: [], "probe": PROBE}
    for name, sub in [(None, parser), *commands.items()]:
        text = re.sub(r"\s+", " ", sub.format_help())
        for action in sub._actions:
            if not action.option_strings or action.nargs == 0 or action.default is None:
                continue
            default = action.default
            if default == argparse.SUPPRESS:  # a global flag: its default is filled in later
                argv = minimal_argv.get(name, [str(name)])
                default = getattr(parse_args(argv), action.dest)
            flag = re.escape(action.option_strings[0])
            pattern = rf"{flag} .*?\(default: {re.escape(str(default))}\)"
            assert re.search(pattern, text), (name, action.option_strings[0], default)


def test_log_format_names() -> None:
    """logfmt is the Prometheus name of the text format; text stays accepted."""
    assert parse_args(["--log.format", "logfmt"]).log_format == "logfmt"
    assert parse_args(["--log.format", "text"]).log_format == "text"
    with pytest.raises(SystemExit):
        parse_args(["--log.format", "xml"])


# --- probe: flags -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--url", "127.0.0.1:11434"], "--url: must start with http:// or https://"),
        (["--max-tokens", "0"], "--max-tokens: must be >= 1"),
        (["--timeout", "-5s"], "--timeout: duration must be > 0, got '-5s'"),
        (["--timeout=-5s"], "--timeout: duration must be > 0, got '-5s'"),
        (["--stall-timeout", "1m", "--timeout", "30s"], "--stall-timeout: 1m must be <= timeout"),
        (["--option", "num_predict=3"], "--option num_predict: use max_tokens instead"),
        (["--option", "=3"], "--option: expected KEY=VALUE"),
        (["--header", "X-Token: env:CLI_TEST_UNSET"],
         "--header X-Token: environment variable CLI_TEST_UNSET is not set"),
        (["--header", "X-Token: file:/nonexistent/token"], "--header X-Token: cannot read"),
        (["--ca-file", "/nonexistent/ca.pem"], "--ca-file: no such file"),
        (["--parallel", "64"], "--parallel: must be <= 32"),
        (["--prompt-tokens", "0"], "--prompt-tokens: must be >= 1"),
    ],
)  # fmt: skip
def test_probe_usage_errors_name_the_flag(
    capsys: pytest.CaptureFixture[str], flags: list[str], expected: str
) -> None:
    """Bad probe flags: exit 2, one line naming the flag, no config key paths."""
    assert main([*PROBE, *flags]) == 2
    err = capsys.readouterr().err
    assert f"ollama-probe-exporter: {expected}" in err
    assert "targets[" not in err
    assert "probes[" not in err
    assert "Input should" not in err


def test_dash_value_is_a_value_but_a_flag_stays_a_flag() -> None:
    """`--prompt -x` is a prompt; `--url --model m` still reports the missing URL."""
    assert parse_args([*PROBE, "--prompt", "-x", "--timeout", "-5s"]).prompt == "-x"
    assert parse_args([*PROBE, "--timeout", "-5s"]).timeout == "-5s"
    with pytest.raises(SystemExit):
        parse_args(["probe", "--url", "--model", "m"])


@pytest.mark.parametrize(
    "header",
    [f"X-Token {SECRET}", SECRET, f"Bad Name: {SECRET}", f"X-Token: {SECRET}\r\nX-Other: 1",
     f"X-Token: {SECRET}", f"x-token: {SECRET}"],
)  # fmt: skip
def test_header_secret_never_in_errors(capsys: pytest.CaptureFixture[str], header: str) -> None:
    """However a --header is wrong, its value does not appear in the error."""
    flags = ["--header", header]
    if header.startswith("x-token"):  # given twice, differently cased
        flags = ["--header", "X-Token: first", *flags]
    elif header.startswith("X-Token: "):  # a valid header; the url is what is wrong
        flags = [*flags, "--url", "nonsense"]
    assert main([*PROBE, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ollama-probe-exporter: ")
    assert SECRET not in err


def test_probe_tls_flags(tmp_path: Path) -> None:
    """--ca-file and --insecure-skip-verify land in the target's TLS settings."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here\n")
    args = parse_args(["probe", "--url", "https://h", "--model", "m", "--ca-file", str(ca),
                       "--insecure-skip-verify"])  # fmt: skip
    tls = probe_settings(args).targets[0].tls
    assert (tls.ca_file, tls.insecure_skip_verify) == (ca, True)


# --- probe: against the simulator -------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[OllamaSimulator]:
    scripts = {
        "m:1b": ModelScript(first_token_delay=0.1, tokens_per_second=100, tokens=50),
        "think:1b": ModelScript(thinking_tokens=2),  # the simulator refuses think otherwise
    }
    async with OllamaSimulator(scripts) as simulator:
        yield simulator


async def run_main(*argv: str) -> int:
    """``main`` in a worker thread: it runs its own event loop while ours serves the simulator."""
    return await asyncio.to_thread(main, list(argv))


async def test_probe_subcommand(sim: OllamaSimulator, capsys: pytest.CaptureFixture[str]) -> None:
    """`probe --json` prints the measured values and exits 0; a failing probe exits 1 with
    its reason; the table form names every value."""
    base = ["probe", "--url", sim.url, "--model", "m:1b"]
    assert await run_main(*base, "--max-tokens", "10", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["success"] is True
    assert data["output_tokens"] == 10
    assert 0.1 <= data["time_to_first_token_seconds"] < data["duration_seconds"] < 5
    assert data["server_tokens_per_second"] == pytest.approx(100.0)
    assert await run_main(*base, "--api", "chat", "--max-tokens", "5") == 0
    assert "time_to_first_token_seconds" in capsys.readouterr().out
    assert sim.requests[-1].path == "/api/chat"
    assert await run_main("probe", "--url", sim.url, "--model", "missing:1b", "--json") == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "model_not_found"


async def test_probe_workload_flags(
    sim: OllamaSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """--api openai --no-stream sends one /v1 request and reports no TTFT; --prompt-tokens
    reaches the server at that size; --parallel sends that many streams and prints each."""
    base = ["probe", "--url", sim.url, "--model", "m:1b", "--max-tokens", "5", "--json"]
    assert await run_main(*base, "--api", "openai", "--no-stream") == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["success"], data["time_to_first_token_seconds"]) == (True, None)
    assert sim.requests[-1].path == "/v1/chat/completions"
    assert sim.requests[-1].body["stream"] is False
    assert await run_main(*base, "--prompt-tokens", "700") == 0
    assert json.loads(capsys.readouterr().out)["prompt_tokens"] == 700
    sim.requests.clear()
    assert await run_main(*base, "--parallel", "3") == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["parallel"], data["streams_failed"], len(data["streams"])) == (3, 0, 3)
    assert data["parallel_tokens_per_second"] > 0
    assert [r.path for r in sim.requests].count("/api/generate") == 3
    assert await run_main(*base[:-1], "--parallel", "2") == 0
    assert capsys.readouterr().out.count("\nstream ") == 2


async def test_probe_sends_headers_think_and_options(
    sim: OllamaSimulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """--header (plain, env: and file:), --think and --option reach the server as given;
    the secrets appear in no output."""
    monkeypatch.setenv("CLI_TEST_TOKEN", f"Bearer {SECRET}")
    token_file = tmp_path / "token"
    token_file.write_text(f"{SECRET}-file\n")
    code = await run_main(
        "probe", "--url", sim.url, "--model", "think:1b", "--max-tokens", "4", "--json",
        "--header", "Authorization: env:CLI_TEST_TOKEN",
        "--header", f"X-File-Token: file:{token_file}",
        "--header", f"X-Plain:{SECRET}-plain",
        "--think", "low",
        "--option", "num_ctx=2048", "--option", 'stop=["\\n"]', "--option", "temperature=0.5",
        "--option", "mirostat_tau=five",
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    request = sim.requests[-1]
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["x-file-token"] == f"{SECRET}-file"
    assert request.headers["x-plain"] == f"{SECRET}-plain"
    assert request.body["think"] == "low"
    assert request.body["options"] == {
        "temperature": 0.5, "seed": 42, "num_ctx": 2048, "stop": ["\n"],
        "mirostat_tau": "five", "num_predict": 4,
    }  # fmt: skip
    assert "warning: --option num_ctx: load-time option" in err
    assert SECRET not in out + err


def _closed_pipe() -> int:
    """The write end of a pipe whose reader is already gone: the first write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


@pytest.mark.e2e  # a real process
def test_config_check_into_a_closed_pipe_exits_quietly() -> None:
    """`--config.check | head -2`: exit 141 like a program killed by SIGPIPE, no traceback."""
    write_end = _closed_pipe()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "exporter", "--config.file", str(EXAMPLE), "--config.check"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (EXIT_BROKEN_PIPE, "")


@pytest.mark.e2e  # a real process
async def test_probe_into_a_closed_pipe_exits_quietly(sim: OllamaSimulator) -> None:
    """`probe … | head -3`: exit 141, nothing on stderr but the simulator warning."""
    write_end = _closed_pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", "probe", "--url", sim.url, "--model", "m:1b",
            "--max-tokens", "3", stdout=write_end, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    finally:
        os.close(write_end)
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert len(sim.requests) >= 1  # it did probe, and only then found the reader gone
    lines = stderr.decode().splitlines()
    assert proc.returncode == EXIT_BROKEN_PIPE
    assert [line for line in lines if "simulator, not Ollama" not in line] == []


def test_every_flag_is_in_the_readme() -> None:
    """The README's command-line reference names every flag and subcommand the parser has."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Command line")
    section = readme[start : readme.index("\n## ", start + 1)]
    parser, commands = _build_parser()
    for name, sub in [(None, parser), *commands.items()]:
        assert name is None or f"ollama-probe-exporter {name}" in section
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help", "--version"):
                    assert flag in section, (name, flag)


def test_simulator_listen_default_is_the_simulators_port() -> None:
    """The CLI's copy of the simulator's default port is the simulator's own."""
    from exporter import cli, simulator  # noqa: PLC0415

    assert f"127.0.0.1:{simulator.DEFAULT_PORT}" == cli.SIMULATOR_LISTEN
