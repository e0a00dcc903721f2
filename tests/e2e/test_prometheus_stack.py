"""End to end: the simulator, the exporter and a real Prometheus with the rules loaded.

Prometheus scrapes the exporter and evaluates the rules every second. Two rule files are
loaded side by side:

* the shipped rules, rendered with the baseline group evaluated every second instead of every
  2 minutes (nothing else differs, which a test checks), for the dashboard's queries;
* an ``-e2e`` variant with second-long windows and ``for:`` durations, for the alerts, so that
  an alert can go from silent to firing within the test.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.prometheus import (
    FAST_MODEL,
    MISSING_MODEL,
    OTHER_MODEL,
    RULES_FILE,
    SCRAPE_JOB,
    ProbedExporter,
    PrometheusServer,
    all_rules,
    load_dashboard,
    load_renderer,
    panel_targets,
    probed_exporter,
    prometheus_server,
    substitute,
    wait_for,
)

E2E_PARAMS: dict[str, Any] = {
    "window": "10s",
    "failure_window": "10s",
    "baseline_window": "2m",
    "baseline_interval": "1s",
    "throughput_drop_for": "3s",
    "failing_for": "3s",
    "ttft_for": "3s",
    "stale_after": "1m",
    "exporter_down_for": "5s",
    "cold_load_for": "3s",
    "min_probes": 3,
    "group_prefix": "ollama-probe-exporter-e2e",
}
ALERTS_GROUP = "ollama-probe-exporter-e2e.alerts"
LABEL_VARIABLES = ("job", "target", "model", "probe")
ALL = dict.fromkeys(LABEL_VARIABLES, ".+")
SLOW_TOKENS_PER_SECOND = 12
"""A tenth of the fast model's scripted rate: a GPU model that fell to the CPU."""


@dataclass
class Stack:
    exporter: ProbedExporter
    prometheus: PrometheusServer
    shipped_rules: Path
    variant_rules: Path
    baseline: str
    """The e2e variant's recorded baseline series."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Simulator → exporter → Prometheus (1 s scrapes) with the shipped and the e2e rules."""
    work = tmp_path_factory.mktemp("e2e")
    renderer = load_renderer()
    shipped = work / "shipped.rules.yml"
    shipped.write_text(renderer.render_rules_file(renderer.Params(baseline_interval="1s")))
    e2e_params = renderer.Params(**E2E_PARAMS)
    variant = work / "e2e.rules.test.yml"
    variant.write_text(renderer.render_rules_file(e2e_params))
    with (
        probed_exporter(work) as exporter,
        prometheus_server([exporter.address], [shipped, variant]) as prometheus,
    ):
        yield Stack(exporter, prometheus, shipped, variant, renderer.Names(e2e_params).baseline)


def finite(result: list[dict[str, Any]]) -> bool:
    """True if an instant-query result holds at least one finite sample."""
    return any(math.isfinite(float(item["value"][1])) for item in result)


def dashboard_queries(variables: dict[str, str]) -> list[tuple[str, str]]:
    """(panel title / refId, query with the variables substituted) for every panel target."""
    return [
        (f"{panel['title']} / {target['refId']}", substitute(target["expr"], variables))
        for panel, target in panel_targets(load_dashboard())
    ]


def alert_states(stack: Stack, alertname: str, **labels: str) -> dict[str, dict[str, Any]]:
    """model → active alert (pending or firing) of the e2e variant's rule ``alertname``."""
    active = {}
    for group in stack.prometheus.rule_groups():
        if group["name"] != ALERTS_GROUP:
            continue
        for rule in group["rules"]:
            if rule["name"] != alertname or labels.items() > rule["labels"].items():
                continue
            for alert in rule["alerts"]:
                active[alert["labels"]["model"]] = alert
    return active


def put_model(stack: Stack, model: str, fields: dict[str, Any]) -> None:
    """Change a simulated model's script for the next requests."""
    request = urllib.request.Request(
        f"{stack.exporter.simulator.url}/_simulator/models/{model}",
        data=json.dumps(fields).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def test_rules_under_test_are_the_shipped_rules(stack: Stack) -> None:
    """The dashboard's rules differ from the shipped file only in the baseline's interval."""
    loaded = stack.shipped_rules.read_text()
    assert loaded.count("interval: 1s") == 1
    assert loaded.replace("interval: 1s", "interval: 2m") == RULES_FILE.read_text()


def test_every_rule_evaluates_without_errors(stack: Stack) -> None:
    """Prometheus reports every loaded rule (shipped and e2e) healthy once it has evaluated."""

    def all_evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in stack.prometheus.rule_groups() for r in g["rules"]]
        return rules if all(r.get("lastEvaluation", "").startswith("2") for r in rules) else None

    rules = wait_for(all_evaluated, 20, "every rule to be evaluated once")
    assert len(rules) == len(all_rules(stack.shipped_rules)) + len(all_rules(stack.variant_rules))
    assert [r for r in rules if r["health"] != "ok"] == []


def test_dashboard_variables_resolve(stack: Stack) -> None:
    """Each variable's label_values query, chained with All, lists the configured values."""
    dashboard = load_dashboard()
    found = {}
    for var in dashboard["templating"]["list"]:
        if var["name"] not in LABEL_VARIABLES:
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
        assert match is not None, var["query"]
        selector, label = substitute(match.group(1), ALL), match.group(2)

        def values(s: str = selector, name: str = label) -> list[str] | None:
            return stack.prometheus.label_values(name, s) or None

        found[var["name"]] = wait_for(
            values,
            20,
            f"values of ${var['name']}",
        )
    assert found == {
        "job": [SCRAPE_JOB],
        "target": ["sim"],
        "model": sorted([FAST_MODEL, OTHER_MODEL, MISSING_MODEL]),
        "probe": ["short"],
    }


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    """Every panel query, with All selected, is valid and returns a finite sample."""
    queries = dashboard_queries(ALL)
    assert len(queries) >= 30

    def empty() -> list[str]:
        return [name for name, expr in queries if not finite(stack.prometheus.query(expr))]

    deadline = time.monotonic() + 45
    missing = empty()
    while missing and time.monotonic() < deadline:
        time.sleep(1)
        missing = empty()
    assert missing == []


def test_dashboard_queries_honour_a_selection(stack: Stack) -> None:
    """With two models selected (regex-escaped as Grafana does), no query returns a third."""
    selection = {**ALL, "model": r"(llama3\\.2:1b|qwen3:0\\.6b)", "target": "sim"}
    for name, expr in dashboard_queries(selection):
        for item in stack.prometheus.query(expr):
            assert item["metric"].get("model", FAST_MODEL) in (FAST_MODEL, OTHER_MODEL), name


def test_failing_alert_fires_with_the_top_reason(stack: Stack) -> None:
    """OllamaProbeFailing fires for the missing model only, naming model_not_found."""
    alert = wait_for(
        lambda: (
            a
            if (a := alert_states(stack, "OllamaProbeFailing").get(MISSING_MODEL))
            and a["state"] == "firing"
            else None
        ),
        30,
        "OllamaProbeFailing to fire for the missing model",
    )
    assert alert["annotations"]["description"].endswith("Most frequent reason: model_not_found.")
    assert alert["labels"]["severity"] == "critical"
    assert set(alert_states(stack, "OllamaProbeFailing")) == {MISSING_MODEL}


def test_throughput_drop_alert_fires_when_a_model_slows_down(stack: Stack) -> None:
    """Slowing a model tenfold fires OllamaProbeThroughputDrop for it, and for no other model."""
    baseline = f'{stack.baseline}{{model="{FAST_MODEL}"}}'
    # The baseline must hold more normal samples than the drop adds before the alert fires.
    wait_for(
        lambda: (
            True
            if (r := stack.prometheus.query(f"count_over_time({baseline}[5m])"))
            and float(r[0]["value"][1]) >= 30
            else None
        ),
        60,
        "30 s of throughput baseline",
    )
    drop = {"comparison": "2m_median"}
    assert alert_states(stack, "OllamaProbeThroughputDrop", **drop) == {}

    put_model(stack, FAST_MODEL, {"tokens_per_second": SLOW_TOKENS_PER_SECOND})
    alert = wait_for(
        lambda: (
            a
            if (a := alert_states(stack, "OllamaProbeThroughputDrop", **drop).get(FAST_MODEL))
            and a["state"] == "firing"
            else None
        ),
        40,
        "OllamaProbeThroughputDrop to fire for the slowed model",
    )
    assert float(alert["value"]) < 0.7
    assert alert["labels"]["probe"] == "short"
    assert "tokens/s below 70% of its 2m median" in alert["annotations"]["summary"]
    assert set(alert_states(stack, "OllamaProbeThroughputDrop", **drop)) == {FAST_MODEL}
