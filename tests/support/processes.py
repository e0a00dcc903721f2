"""Real processes for end-to-end tests: the exporter daemon and the standalone simulator.

Both are started with ``python -m exporter`` on a free loopback port, and a test only gets
them once they answer HTTP, so no test sleeps for a guessed start-up time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Ask the kernel for a free loopback port (a tiny race, acceptable in tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET a loopback URL; return (status, body) without raising on HTTP errors."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def wait_http_ok(
    url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll until ``url`` answers 200, failing early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if http_get(url, timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s")


@dataclass
class RunningProcess:
    """A started child process, its base URL and the file its stderr goes to."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    final_log: str | None = None

    def log(self) -> str:
        """Everything the process printed so far (kept after the process is gone)."""
        if self.final_log is not None:
            return self.final_log
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` and wait; return the exit code (kills after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test environment minus any OLLAMA_PROBE_* variables (the daemon would read them),
    plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OLLAMA_PROBE_")}
    env.update(extra or {})
    return env


@contextmanager
def running_process(
    argv: Sequence[str],
    ready_url: str,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    startup_timeout: float = 20.0,
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Start ``argv`` with output to a log file, wait until ``ready_url`` answers 200, and
    stop it (SIGTERM, then SIGKILL) when the block ends; on failure print its log."""
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "output.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
            )
        try:
            wait_http_ok(ready_url, timeout=startup_timeout, proc=proc)
            yield proc, log_path
        except BaseException:
            sys.stderr.write(log_path.read_text(errors="replace"))
            raise
        finally:
            RunningProcess(proc, "", log_path).stop()


@contextmanager
def _running(
    args: Sequence[str], ready_path: str, port: int, env: dict[str, str] | None
) -> Iterator[RunningProcess]:
    url = f"http://{LOOPBACK}:{port}"
    argv = [sys.executable, "-m", "exporter", *args]
    env = env if env is not None else child_env()
    with running_process(argv, url + ready_path, env=env) as (proc, log_path):
        running = RunningProcess(proc, url, log_path)
        try:
            yield running
        finally:
            running.stop()
            running.final_log = running.log()


@contextmanager
def exporter_process(
    config_file: Path, *extra_args: str, env: dict[str, str] | None = None
) -> Iterator[RunningProcess]:
    """Run the daemon with ``config_file`` on a free port until the block ends (SIGTERM)."""
    port = free_port()
    args = [
        "--config.file",
        str(config_file),
        "--web.listen-address",
        f"{LOOPBACK}:{port}",
        *extra_args,
    ]
    with _running(args, "/-/healthy", port, env) as running:
        yield running


@contextmanager
def simulator_process(script_file: Path | None = None) -> Iterator[RunningProcess]:
    """Run the standalone Ollama simulator (optionally scripted from YAML) on a free port."""
    port = free_port()
    args = ["simulator", "--web.listen-address", f"{LOOPBACK}:{port}"]
    if script_file is not None:
        args += ["--script", str(script_file)]
    with _running(args, "/api/version", port, None) as running:
        yield running
