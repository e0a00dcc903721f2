"""The real daemon process under stress: SIGTERM with many streams in flight, SIGTERM during
the start-up warm-up, and a config whose client cannot be built.

Bounds here are ones only a hang can break (a process that ignores SIGTERM, a warm-up that
waits for a silent target); the times measured are printed (``pytest -rP``) and written down
in docs/soak.md, never asserted tightly.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import (
    LOOPBACK,
    RunningProcess,
    exporter_process,
    free_port,
    http_get,
    simulator_process,
)

STREAMS = 20
# A stream that goes on for hours: every probe is still in flight when SIGTERM arrives.
SLOW_SCRIPT = """
models:
  "slow:1b": {first_token_delay: 0.05, tokens_per_second: 2, tokens: 100000}
"""
# Far above what a prompt exit takes (well under a second on an idle machine), far below
# the grace periods a wedged shutdown would run into.
EXIT_BOUND_S = 10.0


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout} s")


def running_streams(simulator: RunningProcess, model: str) -> int:
    status, body = http_get(f"{simulator.url}/_simulator/models/{model}")
    assert status == 200, body
    return int(json.loads(body)["state"]["running"])


def stop_timed(process: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGTERM ``process``; return its exit code and how long it took to exit."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("the exporter ignored SIGTERM for 60 s") from None
    return code, time.monotonic() - started


def test_sigterm_with_twenty_streams_in_flight(tmp_path: Path) -> None:
    """Twenty probes streaming (one model, twenty profiles, concurrency 20): SIGTERM cancels
    them all and the process exits 0, promptly, without a traceback."""
    script = tmp_path / "script.yml"
    script.write_text(SLOW_SCRIPT)
    with simulator_process(script) as simulator:
        profiles = "\n".join(
            f"  - {{name: p{i}, max_tokens: 100000, interval: 1h, timeout: 1h, stall_timeout: 5m}}"
            for i in range(STREAMS)
        )
        config = tmp_path / "config.yml"
        config.write_text(
            textwrap.dedent(f"""\
                targets:
                  - name: sim
                    url: {simulator.url}
                    models: ["slow:1b"]
                    concurrency: {STREAMS}
                probes:
                """)
            + profiles
            + "\n"
        )
        with exporter_process(config) as exporter:
            wait_for(
                lambda: running_streams(simulator, "slow:1b") == STREAMS,
                what=f"{STREAMS} streams in flight",
            )
            code, took = stop_timed(exporter.proc)
            print(f"SIGTERM with {STREAMS} streams in flight: exit {code} after {took:.2f} s")
        wait_for(lambda: running_streams(simulator, "slow:1b") == 0, what="streams released")
    assert code == 0
    assert took < EXIT_BOUND_S
    log = exporter.log()
    assert "Traceback" not in log
    assert "shutting down" in log
    assert "level=error" not in log


@contextmanager
def silent_target() -> Iterator[str]:
    """A URL whose server completes the TCP handshake (the kernel's backlog does) and never
    answers: the warm-up's ``/api/version`` waits on it for its whole budget."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(16)
        yield f"http://{LOOPBACK}:{sock.getsockname()[1]}"


def test_sigterm_during_start_up_warm_up(tmp_path: Path) -> None:
    """SIGTERM while the warm-up waits on a target that never answers: exit 0, no traceback,
    and no first probe. (That the stop does not wait for the warm-up's budget is proven
    in-process, in tests/test_daemon.py, with a budget of an hour.)"""
    with silent_target() as url:
        config = tmp_path / "config.yml"
        config.write_text(f"targets:\n  - name: silent\n    url: {url}\n    models: [m]\n")
        port = free_port()
        log_path = tmp_path / "exporter.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "exporter", "--config.file", str(config),
                 "--web.listen-address", f"{LOOPBACK}:{port}", "--log.level", "debug"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            # 503 from /-/healthy: the web server is up and the scheduler not yet started,
            # i.e. the warm-up is under way.
            wait_for(
                lambda: _health(port) == 503, what="the web server answering during the warm-up"
            )
            code, took = stop_timed(proc)
            print(f"SIGTERM during the start-up warm-up: exit {code} after {took:.2f} s")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_path.read_text()
    assert code == 0, text
    assert took < EXIT_BOUND_S
    assert "Traceback" not in text
    assert "shutting down" in text
    assert "probe failed" not in text  # no probe was ever started


def _health(port: int) -> int | None:
    try:
        return http_get(f"http://{LOOPBACK}:{port}/-/healthy", timeout=2.0)[0]
    except OSError:
        return None


def test_start_up_with_a_ca_file_that_is_no_bundle_exits_1(tmp_path: Path) -> None:
    """A ``tls.ca_file`` that exists (so the config is valid) but holds no certificate:
    exit 1 with one line naming the key, no traceback, nothing listening."""
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate\n")
    config = tmp_path / "config.yml"
    config.write_text(
        "targets:\n"
        "  - {name: ok, url: 'http://127.0.0.1:9', models: [m]}\n"
        f"  - {{name: tls, url: 'https://127.0.0.1:9', models: [m], tls: {{ca_file: '{bad}'}}}}\n"
    )
    port = free_port()
    check = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", str(config), "--config.check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr  # the file itself is valid
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", str(config),
         "--web.listen-address", f"{LOOPBACK}:{port}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"targets[1].tls.ca_file: {bad}: not a usable CA bundle: ")


def test_sighup_with_a_ca_file_that_is_no_bundle_keeps_the_old_config(tmp_path: Path) -> None:
    """The same file arriving by SIGHUP: refused in one log line, the reload gauge 0, the
    running job still served."""
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate\n")
    script = tmp_path / "script.yml"
    script.write_text('models:\n  "good:1b": {first_token_delay: 0.01, tokens: 4}\n')
    with simulator_process(script) as simulator:
        config = tmp_path / "config.yml"
        good = f"targets:\n  - {{name: sim, url: '{simulator.url}', models: ['good:1b']}}\n"
        config.write_text(good)
        with exporter_process(config) as exporter:
            metrics = exporter.url + "/metrics"
            wait_for(lambda: 'ollama_probe_runs_total{model="good:1b"' in http_get(metrics)[1])
            config.write_text(
                good + f"  - {{name: tls, url: 'https://127.0.0.1:9', models: [m], "
                f"tls: {{ca_file: '{bad}'}}}}\n"
            )
            exporter.proc.send_signal(signal.SIGHUP)
            gauge = "ollama_probe_exporter_config_last_reload_successful 0.0"
            wait_for(lambda: gauge in http_get(metrics)[1], what="the reload refused")
            body = http_get(metrics)[1]
            assert 'target="tls"' not in body
            assert 'ollama_probe_runs_total{model="good:1b",probe="short",target="sim"}' in body
    refused = [line for line in exporter.log().splitlines() if "config reload refused" in line]
    assert len(refused) == 1
    assert "targets[1].tls.ca_file" in refused[0]
    assert "Traceback" not in exporter.log()
