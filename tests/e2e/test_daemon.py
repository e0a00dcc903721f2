"""The real daemon process, configured by a file, probing the standalone simulator process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import RunningProcess, exporter_process, http_get, simulator_process
from tests.support.tools import run_tool

SCRIPT = """
models:
  "good:1b": {first_token_delay: 0.05, tokens_per_second: 200, tokens: 100}
  "broken:1b": {first_token_delay: 0.05, tokens_per_second: 200, tokens: 100, fault: mid_stream_error, fault_after: 2}
  "stuck:1b": {first_token_delay: 600}
"""


def config_text(url: str, models: list[str], interval: str = "1s") -> str:
    return textwrap.dedent(f"""\
        targets:
          - name: sim
            url: {url}
            models: {json.dumps(models)}
            concurrency: 4
        probes:
          - name: short
            max_tokens: 8
            interval: {interval}
            timeout: 120s
            stall_timeout: 5s
        """)


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, body = http_get(url + "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(url: str, name: str, **labels: str) -> float | None:
    return samples(url).get((name, frozenset(labels.items())))


def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    script = tmp_path_factory.mktemp("sim") / "script.yml"
    script.write_text(SCRIPT)
    with simulator_process(script) as proc:
        yield proc


@pytest.fixture
def config(tmp_path: Path, simulator: RunningProcess) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(config_text(simulator.url, ["good:1b", "broken:1b"]))
    return path


def job(model: str) -> dict[str, str]:
    return {"target": "sim", "model": model, "probe": "short"}


def test_probes_show_up_on_metrics(config: Path) -> None:
    """Success and failure of the first probes are on /metrics within seconds, with the reason,
    the landing page lists the jobs, and health is 200."""
    with exporter_process(config) as exporter:
        url = exporter.url
        wait_for(lambda: (value(url, "ollama_probe_runs_total", **job("broken:1b")) or 0) >= 1)
        wait_for(lambda: (value(url, "ollama_probe_runs_total", **job("good:1b")) or 0) >= 1)
        assert value(url, "ollama_probe_success", **job("good:1b")) == 1.0
        assert value(url, "ollama_probe_success", **job("broken:1b")) == 0.0
        assert value(url, "ollama_probe_errors_total", **job("broken:1b"), reason="stream_error")
        assert value(url, "ollama_probe_errors_total", **job("good:1b"), reason="truncated") == 0.0
        assert (
            value(url, "ollama_probe_time_to_first_token_seconds_count", **job("good:1b"),
                  parallel="1") or 0
        ) >= 1  # fmt: skip
        assert value(url, "ollama_probe_exporter_config_last_reload_successful") == 1.0
        assert http_get(url + "/-/healthy")[0] == 200
        status, page = http_get(url + "/")
        assert status == 200
        assert "broken:1b" in page
        assert "stream_error" in page
        assert http_get(url + "/nope")[0] == 404
    assert "Traceback" not in exporter.log()
    assert "probe failed" in exporter.log()
    assert "reason=stream_error" in exporter.log()


def test_promtool_accepts_real_output(config: Path) -> None:
    """`promtool check metrics` finds nothing to complain about in the real exposition."""
    with exporter_process(config) as exporter:
        wait_for(
            lambda: (value(exporter.url, "ollama_probe_runs_total", **job("good:1b")) or 0) >= 1
        )
        body = http_get(exporter.url + "/metrics")[1]
    check = run_tool("promtool", "check", "metrics", input=body)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "_created" not in body


def test_reload_applies_good_config_and_refuses_bad(
    config: Path, simulator: RunningProcess
) -> None:
    """SIGHUP with a broken file keeps the old config; a good file swaps jobs and drops the
    series of removed ones; POST /-/reload does the same."""
    with exporter_process(config, "--web.enable-lifecycle") as exporter:
        url = exporter.url
        wait_for(lambda: (value(url, "ollama_probe_runs_total", **job("broken:1b")) or 0) >= 1)
        config.write_text("targets:\n  - url: http://127.0.0.1:1\n    modelz: [x]\n")
        exporter.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: value(url, "ollama_probe_exporter_config_last_reload_successful") == 0.0)
        assert (
            value(url, "ollama_probe_errors_total", **job("broken:1b"), reason="truncated") == 0.0
        )
        assert "targets[0].modelz" in exporter.log()

        config.write_text(config_text(simulator.url, ["good:1b"]))
        req = urllib.request.Request(url + "/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
        assert value(url, "ollama_probe_exporter_config_last_reload_successful") == 1.0
        assert not any(dict(k[1]).get("model") == "broken:1b" for k in samples(url))
        assert http_get(url + "/-/reload")[0] == 405


def test_sigterm_with_probe_in_flight_exits_cleanly(
    tmp_path: Path, simulator: RunningProcess
) -> None:
    """A stuck probe neither blocks scrapes nor shutdown: SIGTERM exits 0 fast, no traceback."""
    path = tmp_path / "config.yml"
    path.write_text(config_text(simulator.url, ["stuck:1b", "good:1b"], interval="1h"))
    with exporter_process(path) as exporter:
        wait_for(lambda: value(exporter.url, "ollama_probe_success", **job("good:1b")) == 1.0)
        started = time.monotonic()
        samples(exporter.url)  # a scrape while the stuck probe is in flight
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        code = exporter.stop(signal.SIGTERM)
        assert code == 0
        assert time.monotonic() - started < 8.0
    assert "Traceback" not in exporter.log()


def test_invalid_config_exits_1_naming_the_key(tmp_path: Path) -> None:
    """A bad config at start-up: non-zero exit and one line naming the key, no traceback."""
    path = tmp_path / "bad.yml"
    path.write_text("targets:\n  - url: ftp://h\n    models: [m]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.file", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("targets[0].url:")
