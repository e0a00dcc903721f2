"""The daemon in-process: port 0, ``on_ready``, first probes, reload and stop, over loopback.

The same wiring as the real process (``tests/e2e/test_daemon.py``), without a subprocess, so
coverage reaches ``daemon.py`` and a failure shows a Python traceback, not a log file. Also
here: reloads that are all or nothing (a client that cannot be built refuses the whole
config), many reloads while probes stream, and a stop during the start-up warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exporter import runner as runner_module
from exporter.cli import parse_args
from exporter.cli_probe import probe_once, probe_settings
from exporter.config import load_settings
from exporter.daemon import Daemon, StartupError
from exporter.exposition import Registry, render
from exporter.ollama.client import OllamaClient
from exporter.simulator import Fault, ModelScript, OllamaSimulator
from tests.hostile.server import HostileServer, healthy
from tests.support.processes import http_get
from tests.support.samples import samples

TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)

SCRIPTS = {
    "good:1b": ModelScript(first_token_delay=0.01, tokens_per_second=500.0, tokens=8),
    "broken:1b": ModelScript(
        first_token_delay=0.01, tokens=8, fault=Fault.MID_STREAM_ERROR, fault_after=2
    ),
}


def config_text(url: str, models: list[str]) -> str:
    return textwrap.dedent(f"""\
        targets:
          - name: sim
            url: {url}
            models: {models}
            concurrency: 2
        probes:
          - name: short
            max_tokens: 4
            interval: 1h
            timeout: 30s
        """)


@dataclass
class Running:
    daemon: Daemon
    url: str
    config: Path
    sim: OllamaSimulator

    def sample(self, name: str, **labels: str) -> float | None:
        return self.daemon.registry.get_sample_value(name, labels)


def job(model: str) -> dict[str, str]:
    return {"target": "sim", "model": model, "probe": "short"}


async def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``predicate`` on the loop (the daemon runs on it too) until true or timeout."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - the registry has no change event to await
            await asyncio.sleep(0.01)


def launch(config: Path) -> tuple[Daemon, asyncio.Task[None], asyncio.Future[str]]:
    """A daemon on ``config`` (port 0, no environment) running in a task, and the future
    its ``on_ready`` resolves with its URL."""
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    daemon = Daemon(
        load_settings(config, {}), listen=("127.0.0.1", 0), config_path=config,
        environ={}, on_ready=ready.set_result,
    )  # fmt: skip
    return daemon, asyncio.create_task(daemon.run()), ready


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with OllamaSimulator(SCRIPTS) as sim:
        config = tmp_path / "config.yml"
        config.write_text(config_text(sim.url, ["good:1b", "broken:1b"]))
        daemon, task, ready = launch(config)
        try:
            url = await asyncio.wait_for(asyncio.shield(ready), 20)
            yield Running(daemon, url, config, sim)
        finally:
            daemon.stop()
            await asyncio.wait_for(task, 20)


async def test_first_probes_are_recorded_and_served(running: Running) -> None:
    """Every job probes at start-up; success, reason and the landing page follow on HTTP."""
    await wait_until(
        lambda: all(
            (running.sample("ollama_probe_runs_total", **job(m)) or 0) >= 1 for m in SCRIPTS
        )
    )
    assert running.sample("ollama_probe_success", **job("good:1b")) == 1.0
    assert running.sample("ollama_probe_success", **job("broken:1b")) == 0.0
    errors = running.sample("ollama_probe_errors_total", **job("broken:1b"), reason="stream_error")
    assert errors == 1.0
    assert running.url.startswith("http://127.0.0.1:")
    assert not running.url.endswith(":0")
    status, body = await asyncio.to_thread(http_get, running.url + "/metrics")
    assert status == 200
    assert 'ollama_probe_success{model="good:1b",probe="short",target="sim"} 1.0' in body
    status, page = await asyncio.to_thread(http_get, running.url + "/")
    assert status == 200
    assert "stream_error" in page
    assert (await asyncio.to_thread(http_get, running.url + "/-/healthy"))[0] == 200


async def test_reload_swaps_jobs_and_refuses_a_bad_file(running: Running) -> None:
    """A bad file is refused and changes nothing; a good one drops the removed job's series."""
    await wait_until(
        lambda: (running.sample("ollama_probe_runs_total", **job("broken:1b")) or 0) >= 1
    )
    running.config.write_text("targets:\n  - url: http://127.0.0.1:1\n    modelz: [x]\n")
    ok, message = await running.daemon.reload()
    assert not ok
    assert "targets[0].modelz" in message
    assert running.sample("ollama_probe_exporter_config_last_reload_successful") == 0.0
    assert running.sample("ollama_probe_runs_total", **job("broken:1b")) is not None

    running.config.write_text(config_text(running.sim.url, ["good:1b"]))
    ok, message = await running.daemon.reload()
    assert ok, message
    assert running.sample("ollama_probe_exporter_config_last_reload_successful") == 1.0
    assert running.sample("ollama_probe_runs_total", **job("broken:1b")) is None
    assert running.sample("ollama_probe_runs_total", **job("good:1b")) is not None


async def test_own_delays_are_measured(running: Running) -> None:
    """Each run's start delay is observed, and the event loop's lag is sampled meanwhile."""
    await wait_until(
        lambda: (
            (running.sample("ollama_probe_exporter_probe_start_delay_seconds_count") or 0)
            >= len(SCRIPTS)
            and (running.sample("ollama_probe_exporter_event_loop_lag_seconds_count") or 0) >= 1
        )
    )


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
async def test_metrics_render_time_is_measured(running: Running, encoding: str) -> None:
    """Each /metrics answer's render time is observed once its last piece is out, gzip or
    not, and is less than the whole scrape took, which also counts the socket and the HTTP."""
    name = "ollama_probe_exporter_metrics_render_seconds"

    def observed() -> tuple[float, float]:
        return (running.sample(f"{name}_count") or 0.0, running.sample(f"{name}_sum") or 0.0)

    def scrape() -> tuple[int, bytes]:
        request = urllib.request.Request(
            running.url + "/metrics", headers={"Accept-Encoding": encoding}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()

    count, total = observed()
    started = time.perf_counter()
    status, body = await asyncio.to_thread(scrape)
    took = time.perf_counter() - started
    assert status == 200
    assert body.startswith(b"\x1f\x8b") == (encoding == "gzip")
    await wait_until(lambda: observed()[0] == count + 1)
    assert 0 < observed()[1] - total < took


async def test_stop_returns_and_releases_the_port(tmp_path: Path) -> None:
    """``run()`` returns after ``stop()``, its listener closed and signal handlers removed."""
    async with OllamaSimulator(SCRIPTS) as sim:
        env = {"OLLAMA_PROBE_TARGETS__0__URL": sim.url, "OLLAMA_PROBE_TARGETS__0__MODELS": '["x"]'}
        settings = load_settings(None, env)
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        daemon = Daemon(settings, listen=("127.0.0.1", 0), environ={}, on_ready=ready.set_result)
        task = asyncio.create_task(daemon.run())
        url = await asyncio.wait_for(ready, 20)
        daemon.stop()
        await asyncio.wait_for(task, 20)
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        await asyncio.to_thread(http_get, url + "/-/healthy", 1.0)
    loop = asyncio.get_running_loop()
    assert not loop.remove_signal_handler(signal.SIGHUP)


# --- all-or-nothing reloads -----------------------------------------------------------------


@dataclass
class ClientLedger:
    """Every client the runner builds from now on, and which of them were closed."""

    built: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def all_closed(self) -> bool:
        return sorted(self.closed) == sorted(self.built)


@pytest.fixture
def ledger(monkeypatch: pytest.MonkeyPatch) -> ClientLedger:
    """Count the clients ``exporter.runner`` builds and closes (to prove none is leaked)."""
    ledger = ClientLedger()

    class CountedClient(OllamaClient):
        def __init__(self, target: Any, **kwargs: Any) -> None:
            super().__init__(target, **kwargs)
            ledger.built.append(target.name)

        async def aclose(self) -> None:
            ledger.closed.append(self.target.name)
            await super().aclose()

    monkeypatch.setattr(runner_module, "OllamaClient", CountedClient)
    return ledger


def not_a_pem(tmp_path: Path) -> Path:
    """A file the config accepts as ``tls.ca_file`` (it exists) that holds no certificate."""
    path = tmp_path / "not-a-ca.pem"
    path.write_text("this is not a PEM certificate bundle\n")
    return path


def job_ids(daemon: Daemon) -> set[str]:
    return {job.id for job in daemon._scheduler._scheduler.get_jobs()}


def exposition_text(registry: Registry) -> str:
    """What /metrics serves, as text: pre-rendered, not parsed back into objects."""
    return b"".join(render(registry, None, None).body).decode()


def series_targets(registry: Registry) -> set[str]:
    return {
        labels["target"]
        for _, labels, _ in samples(exposition_text(registry))
        if "target" in labels
    }


async def test_reload_that_cannot_build_a_client_changes_nothing(
    running: Running, tmp_path: Path, ledger: ClientLedger, caplog: pytest.LogCaptureFixture
) -> None:
    """A CA file that exists but is no PEM bundle passes validation and fails only when the
    client is built. The reload is refused with one line naming the key, the old config,
    clients, jobs and series stay, and the client built for the good new target is closed."""
    await wait_until(
        lambda: (running.sample("ollama_probe_runs_total", **job("good:1b")) or 0) >= 1
    )
    before = (
        running.daemon.settings,
        job_ids(running.daemon),
        series_targets(running.daemon.registry),
    )
    bad = not_a_pem(tmp_path)
    running.config.write_text(
        textwrap.dedent(f"""\
        targets:
          - name: sim
            url: {running.sim.url}
            models: ["good:1b", "broken:1b"]
            concurrency: 2
          - name: extra
            url: {running.sim.url}
            models: ["good:1b"]
          - name: bad-ca
            url: https://127.0.0.1:9
            models: ["good:1b"]
            tls: {{ca_file: "{bad}"}}
        probes:
          - {{name: short, max_tokens: 4, interval: 1h, timeout: 30s}}
        """)
    )

    ok, message = await running.daemon.reload()

    assert not ok
    header, line = message.split("\n")
    assert header == "reload refused, previous config kept:"
    assert line.startswith(f"targets[2].tls.ca_file: {bad}: not a usable CA bundle: ")
    assert "_ssl.c" not in line
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"config reload refused: {line}"]
    assert running.sample("ollama_probe_exporter_config_last_reload_successful") == 0.0
    after = (
        running.daemon.settings,
        job_ids(running.daemon),
        series_targets(running.daemon.registry),
    )
    assert after == before
    assert set(running.daemon._runner._slots) == {"sim"}
    assert ledger.built == ["extra"]  # sim kept its client; bad-ca failed while being built
    await wait_until(ledger.all_closed)

    # The same file with the CA fixed applies: the refusal was about the client, not the file.
    running.config.write_text(running.config.read_text().replace(f'tls: {{ca_file: "{bad}"}}', ""))
    ok, message = await running.daemon.reload()
    assert ok, message
    assert running.sample("ollama_probe_exporter_config_last_reload_successful") == 1.0
    await wait_until(lambda: {"sim", "extra", "bad-ca"} <= series_targets(running.daemon.registry))


async def test_start_up_with_a_client_that_cannot_be_built(
    tmp_path: Path, ledger: ClientLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    """At start-up the same failure is one line and exit status 1 (``run``), or
    ``StartupError`` (``serve``); the clients already built are closed, the port released."""
    bad = not_a_pem(tmp_path)
    settings = load_settings(
        None,
        {
            "OLLAMA_PROBE_TARGETS": json.dumps([
                {"name": "good", "url": "http://127.0.0.1:9", "models": ["m"]},
                {"name": "bad-ca", "url": "https://127.0.0.1:9", "models": ["m"],
                 "tls": {"ca_file": str(bad)}},
            ])
        },
    )  # fmt: skip
    daemon = Daemon(settings, listen=("127.0.0.1", 0), environ={})
    url = daemon.url
    with pytest.raises(StartupError, match=r"^targets\[1\]\.tls\.ca_file: .*not a usable CA"):
        await asyncio.wait_for(daemon.serve(), 20)
    assert ledger.built == ["good"]
    assert ledger.all_closed()
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        await asyncio.to_thread(http_get, url + "/-/healthy", 1.0)

    daemon = Daemon(settings, listen=("127.0.0.1", 0), environ={})
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        await (
            daemon.run()
        )  # awaited in this task: SystemExit out of a task of its own stops the loop
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("targets[1].tls.ca_file: ")


# --- stop during the warm-up ----------------------------------------------------------------


async def test_stop_during_warm_up_returns_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A target that accepts the connection and never answers holds the warm-up for its whole
    budget; a stop meanwhile ends ``run()`` without waiting for it. The budget is made an hour
    here, so only a warm-up that ignores the stop can make this test time out."""
    monkeypatch.setattr(runner_module, "WARM_UP_TIMEOUT_S", 3600.0)
    connected = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = {"OLLAMA_PROBE_TARGETS__0__URL": f"http://127.0.0.1:{port}",
           "OLLAMA_PROBE_TARGETS__0__MODELS": '["m"]'}  # fmt: skip
    ready: list[str] = []
    daemon = Daemon(
        load_settings(None, env), listen=("127.0.0.1", 0), environ={}, on_ready=ready.append
    )
    async with server:
        task = asyncio.create_task(daemon.run())
        await asyncio.wait_for(connected.wait(), 20)
        assert (await asyncio.to_thread(http_get, daemon.url + "/-/healthy"))[0] == 503
        daemon.stop()
        await asyncio.wait_for(task, 20)
    assert ready == []  # the first probes were never scheduled


# --- many reloads while probes stream -------------------------------------------------------

KEEP = [f"keep{i}" for i in range(10)]
SIDE_A = [f"a{i}" for i in range(10)]
SIDE_B = [f"b{i}" for i in range(10)]
# About 2 s per probe: a stream is nearly always in flight for each of the 20 jobs.
SLOW = ModelScript(first_token_delay=0.2, tokens_per_second=6.0, tokens=12)


def load_config(url: str, side: list[str], churn_concurrency: int) -> str:
    """``sim`` (10 jobs, unchanged across reloads) and ``churn`` (10 jobs that differ between
    the two sides, and a concurrency that differs too, so its client is replaced)."""
    return textwrap.dedent(f"""\
        targets:
          - name: sim
            url: {url}
            models: {json.dumps(KEEP)}
            concurrency: 10
          - name: churn
            url: {url}
            models: {json.dumps(side)}
            concurrency: {churn_concurrency}
        probes:
          - name: short
            max_tokens: 12
            interval: 1s
            timeout: 60s
            stall_timeout: 20s
        """)


def walk(registry: Registry) -> tuple[set[str], dict[tuple[str, frozenset[Any]], float]]:
    """The models that have series, and every counter and histogram sample of the kept
    target (none of which may ever go down), in one pass over the registry's exposition."""
    text = exposition_text(registry)
    monotonic = {
        f"{name}{suffix}"
        for name, kind in TYPE_LINE.findall(text)
        if kind in ("counter", "histogram")
        for suffix in ("", "_total", "_bucket", "_count", "_sum")
    }
    models: set[str] = set()
    kept: dict[tuple[str, frozenset[Any]], float] = {}
    for name, labels, value in samples(text):
        if not name.startswith("ollama_probe_"):
            continue
        if "model" in labels:
            models.add(labels["model"])
        if name in monotonic and labels.get("target") == "sim":
            kept[(name, frozenset(labels.items()))] = value
    return models, kept


@contextmanager
def scraping(url: str) -> Iterator[list[int]]:
    """Scrape ``url`` in a thread every 20 ms for as long as the block runs; yields the
    statuses seen. Paced rather than back to back: the thread shares the interpreter with the
    daemon under test, and a tight loop would mostly measure its own parsing."""
    statuses: list[int] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            status, body = http_get(url, timeout=30)
            list(samples(body))  # parses: no torn exposition
            statuses.append(status)
            done.wait(0.02)

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    try:
        yield statuses
    finally:
        done.set()
        thread.join(60)


@pytest.mark.slow
async def test_fifty_reloads_while_twenty_probes_stream(
    tmp_path: Path, ledger: ClientLedger, caplog: pytest.LogCaptureFixture
) -> None:
    """Fifty reloads, alternating between two job sets, while about twenty slow streams are in
    flight and /metrics is scraped every 20 ms. No error, every scrape answered, removed jobs'
    series gone after each reload, kept jobs' counters never lower, and after the stop every
    connection closed and every client built was closed."""
    scripts = dict.fromkeys([*KEEP, *SIDE_A, *SIDE_B], SLOW)
    async with OllamaSimulator(scripts) as sim:
        config = tmp_path / "config.yml"
        config.write_text(load_config(sim.url, SIDE_A, 10))
        daemon, task, ready = launch(config)
        url = await asyncio.wait_for(asyncio.shield(ready), 20)

        def in_flight() -> int:
            return sum(sim.model_state(m).running for m in scripts)

        await wait_until(lambda: in_flight() >= 15)
        peak = 0  # sampled between the reloads only
        _, previous = walk(daemon.registry)
        started = time.monotonic()
        with scraping(url + "/metrics") as statuses:
            for i in range(50):
                side = SIDE_B if i % 2 == 0 else SIDE_A
                config.write_text(load_config(sim.url, side, 11 if i % 2 == 0 else 10))
                ok, message = await daemon.reload()
                assert ok, message
                models, current = walk(daemon.registry)
                assert models == {*KEEP, *side}, f"reload {i}: series of removed jobs left"
                lower = {k: (v, current.get(k)) for k, v in previous.items() if not current.get(k, -1) >= v}  # fmt: skip
                assert not lower, f"reload {i}: kept series went down or vanished: {lower}"
                previous = current
                peak = max(peak, in_flight())
                await asyncio.sleep(0.1)  # pacing: some probes finish between reloads
        elapsed = time.monotonic() - started
        daemon.stop()
        await asyncio.wait_for(task, 30)
        await asyncio.wait_for(sim.wait_idle(), 20)  # every stream closed, none left hanging
    print(f"50 reloads in {elapsed:.1f} s, {len(statuses)} scrapes, peak {peak} probes in flight")
    assert peak >= 15, f"only {peak} probes were in flight at once"
    assert statuses
    assert set(statuses) == {200}
    assert ledger.built.count("churn") == 51, ledger.built  # one per reload: concurrency changes
    assert ledger.all_closed()
    assert (previous[("ollama_probe_runs_total", frozenset(job("keep0").items()))]) >= 1
    expected = ("probe run skipped", runner_module.SIMULATOR_WARNING)
    bad = [r for r in caplog.records if r.levelno >= logging.WARNING and not r.getMessage().startswith(expected)]  # fmt: skip
    assert not bad, [(r.levelname, r.getMessage(), getattr(r, "fields", None)) for r in bad]


# --- the simulator warning, in the daemon and in `probe` ------------------------------------


async def test_probe_warns_about_the_simulator_as_the_daemon_does(
    running: Running, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Numbers from the simulator are synthetic: the daemon logs it at start-up, and
    ``probe`` prints the same sentence on stderr (stdout stays the result alone)."""
    settings = probe_settings(probe_args(running.sim.url, "good:1b"))
    capsys.readouterr()
    result = await probe_once(settings.jobs()[0])
    assert result.success, result.detail
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"warning: {runner_module.SIMULATOR_WARNING}\n"
    started = [r.getMessage() for r in caplog.get_records("setup")]  # the daemon's start-up
    assert runner_module.SIMULATOR_WARNING in started


async def test_probe_says_nothing_about_a_real_server(capsys: pytest.CaptureFixture[str]) -> None:
    with HostileServer(healthy) as server:
        settings = probe_settings(probe_args(server.url, "m"))
        result = await probe_once(settings.jobs()[0])
    assert result.success, result.detail
    assert capsys.readouterr().err == ""


def probe_args(url: str, model: str) -> argparse.Namespace:
    """The ``probe`` command's flags, with its defaults, as the command line parses them."""
    return parse_args(["probe", "--url", url, "--model", model, "--max-tokens", "4"])


async def test_reload_during_warm_up_is_what_the_scheduler_starts_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGHUP while the warm-up waits: the first probes are those of the reloaded config,
    not of the one the process started with. The target answers its ``/api/version`` only
    once the reload is done, so the reload is certain to land inside the warm-up."""
    monkeypatch.setattr(runner_module, "WARM_UP_TIMEOUT_S", 3600.0)
    asked, answer = asyncio.Event(), asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.set()
        await reader.readuntil(b"\r\n\r\n")
        await answer.wait()
        body = b'{"version":"0.15.6"}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(held, "127.0.0.1", 0)
    held_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server, OllamaSimulator(SCRIPTS) as sim:
        config = tmp_path / "config.yml"
        config.write_text(config_text(held_url, ["broken:1b"]))
        daemon, task, ready = launch(config)
        try:
            await asyncio.wait_for(asyncio.shield(asked.wait()), 20)
            config.write_text(config_text(sim.url, ["good:1b"]))
            ok, message = await daemon.reload()
            assert ok, message
            answer.set()  # the old target's version request is answered (or was cancelled)
            await asyncio.wait_for(asyncio.shield(ready), 20)
            assert job_ids(daemon) == {"sim/good:1b/short"}
            await wait_until(
                lambda: (
                    daemon.registry.get_sample_value("ollama_probe_success", job("good:1b")) == 1.0
                )
            )
        finally:
            daemon.stop()
            await asyncio.wait_for(task, 20)
