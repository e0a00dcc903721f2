"""A real Prometheus (and promtool) for tests, plus the shipped rules file and the dashboard.

The Prometheus server listens on a free loopback port with a temporary data directory, so
several runs can share a machine. A missing binary skips the test with the package to install
(fails it in CI, ``tests.support.tools``): ``make test`` installs Debian's ``prometheus``
package, which provides both ``prometheus`` and ``promtool``.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.processes import (
    LOOPBACK,
    RunningProcess,
    exporter_process,
    free_port,
    http_get,
    running_process,
    simulator_process,
)
from tests.support.tools import require_tool, run_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = REPO_ROOT / "deploy" / "prometheus"
RULES_FILE = RULES_DIR / "ollama-probe-exporter.rules.yml"
DASHBOARD_FILE = REPO_ROOT / "grafana" / "ollama-probe-exporter.json"
RULE_TESTS_DIR = REPO_ROOT / "tests" / "rules"
SCRAPE_JOB = "ollama-probe"

RAW_METRIC = re.compile(r"(?<![\w:])ollama_probe_\w+(?![\w:])")
RECORDED_METRIC = re.compile(r"(?<![\w:])[a-z_]*:\w+:\w+(?![\w:])")
"""A recorded series, ``level:metric:operations``; the level is empty for label-less constants."""


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool with ``args``; the caller asserts on the result."""
    return run_tool("promtool", *args, cwd=cwd)


def load_dashboard() -> dict[str, Any]:
    """The shipped dashboard JSON."""
    data: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return data


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows included, with the panels of collapsed rows flattened in."""
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def panel_targets(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query target of every panel."""
    return [
        (panel, target)
        for panel in dashboard_panels(dashboard)
        for target in panel.get("targets", [])
    ]


GRAFANA_INTERVALS = {"$__interval": "1m", "$__rate_interval": "1m", "$__range": "5m"}
"""Values for Grafana's built-in variables when a query runs outside Grafana."""


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace ``$name``/``${name}`` variables (longest names first) as Grafana would."""
    values = {**GRAFANA_INTERVALS, **{f"${k}": v for k, v in variables.items()}}
    values |= {"${" + k[1:] + "}": v for k, v in list(values.items())}
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    return expr


@lru_cache(maxsize=4)
def exposed_samples(exposition: str) -> tuple[Sample, ...]:
    """Every sample of a text exposition, read by prometheus-client's parser. Cached: the
    parser reads a character at a time, and the rule and dashboard tests ask the same
    exposition hundreds of questions."""
    return tuple(
        sample for family in text_string_to_metric_families(exposition) for sample in family.samples
    )


def metric_names(exposition: str) -> set[str]:
    """Every sample name (``x_bucket``, ``x_count``, ``x_total``…) in a text exposition."""
    return {sample.name for sample in exposed_samples(exposition)}


def bucket_bounds(exposition: str, metric: str) -> set[str]:
    """The ``le`` values of ``metric``'s buckets, spelled as exposed."""
    return {
        sample.labels["le"]
        for sample in exposed_samples(exposition)
        if sample.name == f"{metric}_bucket"
    }


def raw_metrics(expr: str) -> set[str]:
    """Names of the exporter's own series referenced by a PromQL expression."""
    return set(RAW_METRIC.findall(expr))


def recorded_metrics(expr: str) -> set[str]:
    """Names of recording-rule series (``level:metric:operations``) referenced by ``expr``."""
    return set(RECORDED_METRIC.findall(expr))


def rule_groups(path: Path = RULES_FILE) -> list[dict[str, Any]]:
    """The ``groups`` of a rules file."""
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text())["groups"]
    return groups


def all_rules(path: Path = RULES_FILE) -> list[dict[str, Any]]:
    """Every rule of a rules file, in order."""
    return [rule for group in rule_groups(path) for rule in group["rules"]]


T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.5,
    *,
    detail: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something other than None; fail after ``timeout`` s,
    adding ``detail()`` (what the last call saw) to the message."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            seen = f"; {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{seen}")
        time.sleep(interval)


@dataclass
class PrometheusServer:
    """A running Prometheus: its base URL and its log, plus HTTP API helpers."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; return ``data`` (assert the call succeeded)."""
        query = urllib.parse.urlencode(params)
        status, body = http_get(f"{self.url}/api/v1/{path}?{query}", timeout=10.0)
        payload = json.loads(body)
        assert status == 200, (path, params, payload)
        assert payload["status"] == "success", (path, params, payload)
        return payload["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; returns the result list (vector) or a one-item list (scalar)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        """``label_values(match, label)``, as a Grafana variable query resolves it."""
        values: list[str] = self.api(f"label/{label}/values", **{"match[]": match})
        return values

    def rule_groups(self) -> list[dict[str, Any]]:
        """Rule groups with their rules' health, state and alerts."""
        groups: list[dict[str, Any]] = self.api("rules")["groups"]
        return groups

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def prometheus_config(targets: Sequence[str], rule_files: Sequence[Path]) -> dict[str, Any]:
    """A config scraping ``targets`` (host:port) every second as job ``ollama-probe``."""
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": SCRAPE_JOB, "static_configs": [{"targets": list(targets)}]}
        ],
    }


@contextmanager
def prometheus_server(
    targets: Sequence[str], rule_files: Sequence[Path], startup_timeout: float = 30.0
) -> Iterator[PrometheusServer]:
    """Run Prometheus on a free loopback port with a temporary TSDB until the block ends."""
    binary = require_tool("prometheus")
    with tempfile.TemporaryDirectory(prefix="prometheus-test-") as tmp:
        work = Path(tmp)
        config = work / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(targets, rule_files)))
        check = promtool("check", "config", str(config))
        assert check.returncode == 0, check.stdout + check.stderr
        port = free_port()
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--log.level=warn",
        ]
        url = f"http://{LOOPBACK}:{port}"
        with running_process(argv, f"{url}/-/ready", cwd=work, startup_timeout=startup_timeout) as (
            proc,
            log_path,
        ):
            yield PrometheusServer(proc, url, log_path)


FAST_MODEL = "llama3.2:1b"
OTHER_MODEL = "qwen3:0.6b"
MISSING_MODEL = "missing:latest"
"""Not in the simulator's script: every probe of it fails with ``model_not_found``."""

SIMULATOR_SCRIPT = {
    "models": {
        FAST_MODEL: {
            "first_token_delay": 0.02,
            "tokens_per_second": 120,
            "tokens": 64,
            "load_duration": 0.003,
        },
        OTHER_MODEL: {
            "first_token_delay": 0.03,
            "tokens_per_second": 150,
            "tokens": 64,
            "load_duration": 0.002,
        },
    }
}


@dataclass
class ProbedExporter:
    """The simulator and an exporter probing it every second (two models and a missing one)."""

    simulator: RunningProcess
    exporter: RunningProcess

    @property
    def address(self) -> str:
        """host:port of the exporter, for a scrape config."""
        return self.exporter.url.removeprefix("http://")

    def metrics(self) -> str:
        status, body = http_get(f"{self.exporter.url}/metrics")
        assert status == 200, body
        return body


@contextmanager
def probed_exporter(work: Path) -> Iterator[ProbedExporter]:
    """Start the simulator and an exporter whose probes of it run every second."""
    script = work / "simulator.yml"
    script.write_text(yaml.safe_dump(SIMULATOR_SCRIPT))
    with simulator_process(script) as simulator:
        config = work / "exporter.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "targets": [
                        {
                            "name": "sim",
                            "url": simulator.url,
                            "models": [FAST_MODEL, OTHER_MODEL, MISSING_MODEL],
                        }
                    ],
                    "probes": [
                        {
                            "name": "short",
                            "api": "generate",
                            "max_tokens": 16,
                            "interval": "1s",
                            "timeout": "10s",
                            "stall_timeout": "5s",
                        }
                    ],
                }
            )
        )
        with exporter_process(config) as exporter:
            yield ProbedExporter(simulator, exporter)


def full_exposition(stack: ProbedExporter, timeout: float = 20.0) -> str:
    """The exporter's /metrics once a successful and a failed probe have been recorded."""

    def ready() -> str | None:
        text = stack.metrics()
        names = metric_names(text)
        done = "ollama_probe_error_duration_seconds_count" in names and re.search(
            r'^ollama_probe_duration_seconds_count\{[^}]*model="'
            + re.escape(FAST_MODEL)
            + r'"[^}]*\} [1-9]',
            text,
            re.MULTILINE,
        )
        return text if done else None

    return wait_for(ready, timeout, "a successful and a failed probe in /metrics")
