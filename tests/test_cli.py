"""The command line: --config.check output and exit codes, flags, and the probe subcommand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import DEFAULT_PORT, EXIT_BROKEN_PIPE, UsageError, main, parse_listen_address
from tests.support.processes import simulator_process

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "example.yml"


def test_config_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    """A valid file: summary on stdout, exit 0."""
    code = main(["--config.file", str(REPO / "config" / "example.yml"), "--config.check"])
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


def run_probe_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "probe", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_probe_subcommand(tmp_path: Path) -> None:
    """`probe --json` prints the measured values and exits 0; a failing probe exits 1 with
    its reason; the table form names every value."""
    script = tmp_path / "s.yml"
    script.write_text(
        'models:\n  "m:1b": {first_token_delay: 0.1, tokens_per_second: 100, tokens: 50}\n'
    )
    with simulator_process(script) as sim:
        ok = run_probe_cmd("--url", sim.url, "--model", "m:1b", "--max-tokens", "10", "--json")
        assert ok.returncode == 0, ok.stderr
        data = json.loads(ok.stdout)
        assert data["success"] is True
        assert data["output_tokens"] == 10
        assert 0.1 <= data["time_to_first_token_seconds"] < 0.2
        assert data["server_tokens_per_second"] == pytest.approx(100.0)
        table = run_probe_cmd(
            "--url", sim.url, "--model", "m:1b", "--api", "chat", "--max-tokens", "5"
        )
        assert table.returncode == 0
        assert "time_to_first_token_seconds" in table.stdout
        bad = run_probe_cmd("--url", sim.url, "--model", "missing:1b", "--json")
        assert bad.returncode == 1
        assert json.loads(bad.stdout)["reason"] == "model_not_found"


def _closed_pipe() -> int:
    """The write end of a pipe whose reader is already gone: the first write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


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
