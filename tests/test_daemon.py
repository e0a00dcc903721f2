"""The daemon in-process: port 0, ``on_ready``, first probes, reload and stop, over loopback.

The same wiring as the real process (``tests/e2e/test_daemon.py``), without a subprocess, so
coverage reaches ``daemon.py`` and a failure shows a Python traceback, not a log file.
"""

from __future__ import annotations

import asyncio
import signal
import textwrap
import urllib.error
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.config import load_settings
from exporter.daemon import Daemon
from exporter.simulator import Fault, ModelScript, OllamaSimulator
from tests.support.processes import http_get

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


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with OllamaSimulator(SCRIPTS) as sim:
        config = tmp_path / "config.yml"
        config.write_text(config_text(sim.url, ["good:1b", "broken:1b"]))
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        daemon = Daemon(
            load_settings(config, {}),
            listen=("127.0.0.1", 0),
            config_path=config,
            environ={},
            on_ready=ready.set_result,
        )
        task = asyncio.create_task(daemon.run())
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
