"""End to end: the simulator, the exporter and a real Prometheus with the shipped rules loaded.

Prometheus scrapes two exporters probing the simulator, and evaluates the rules every second:
the shared probed exporter (one short profile), and one with a ``parallel`` and a
``when: if_loaded`` profile (tests/dashboard/workloads.py), whose aggregate tokens/s and skip
counter no short profile has. The rules file is the
shipped one; only its baseline group is evaluated every second instead of every 2 minutes, so
the dashboard's baseline panels have data at once (a test checks nothing else differs).

What needs simulated hours or days (the throughput drop against a 7-day median, every alert's
``for:``) is proven by the promtool unit tests in tests/rules/; here the point is that the
dashboard's queries and the rules work on what the real exporter really exposes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboard.workloads import WORKLOAD_PROBES, workload_exporter
from tests.support.processes import RunningProcess
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
    panel_targets,
    probed_exporter,
    prometheus_server,
    rule_groups,
    substitute,
    wait_for,
)

BASELINE_GROUP = "ollama-probe-exporter.baseline"
ALERTS_GROUP = "ollama-probe-exporter.alerts"
LABEL_VARIABLES = ("job", "target", "model", "probe")
ALL = dict.fromkeys(LABEL_VARIABLES, ".+")


@dataclass
class Stack:
    exporter: ProbedExporter
    workloads: RunningProcess
    prometheus: PrometheusServer


def shipped_rules_with_a_fast_baseline(path: Path) -> Path:
    """Write the shipped rules to ``path`` with the baseline group evaluated every second."""
    groups = rule_groups(RULES_FILE)
    (baseline,) = [group for group in groups if group["name"] == BASELINE_GROUP]
    baseline["interval"] = "1s"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Simulator → exporter → Prometheus (1 s scrapes and evaluations) with the shipped rules."""
    work = tmp_path_factory.mktemp("e2e")
    rules = shipped_rules_with_a_fast_baseline(work / "ollama-probe-exporter.rules.yml")
    with (
        probed_exporter(work) as exporter,
        workload_exporter(exporter.simulator.url, work) as workloads,
        prometheus_server(
            [exporter.address, workloads.url.removeprefix("http://")], [rules]
        ) as prometheus,
    ):
        yield Stack(exporter, workloads, prometheus)


def finite(result: list[dict[str, Any]]) -> bool:
    """True if an instant-query result holds at least one finite sample."""
    return any(math.isfinite(float(item["value"][1])) for item in result)


def dashboard_queries(variables: dict[str, str]) -> list[tuple[str, str]]:
    """(panel title / refId, query with the variables substituted) for every panel target."""
    return [
        (f"{panel['title']} / {target['refId']}", substitute(target["expr"], variables))
        for panel, target in panel_targets(load_dashboard())
    ]


def active_alerts(stack: Stack, alertname: str) -> dict[str, dict[str, Any]]:
    """model → active alert (pending or firing) of the shipped rule ``alertname``."""
    return {
        alert["labels"]["model"]: alert
        for group in stack.prometheus.rule_groups()
        if group["name"] == ALERTS_GROUP
        for rule in group["rules"]
        if rule["name"] == alertname
        for alert in rule["alerts"]
    }


def test_rules_under_test_are_the_shipped_rules(stack: Stack) -> None:
    """Prometheus runs the shipped groups, each with its rules in order, and the baseline
    group (every 2 m in the shipped file) every second, as the others."""
    shipped = rule_groups(RULES_FILE)
    loaded = stack.prometheus.rule_groups()
    assert {g["name"]: [r["name"] for r in g["rules"]] for g in loaded} == {
        g["name"]: [r.get("record") or r["alert"] for r in g["rules"]] for g in shipped
    }
    assert {g["name"]: g.get("interval") for g in shipped}[BASELINE_GROUP] == "2m"
    assert {g["name"]: g["interval"] for g in loaded}[BASELINE_GROUP] == 1


def test_every_rule_evaluates_without_errors(stack: Stack) -> None:
    """Prometheus reports every shipped rule healthy once it has evaluated them all."""

    def all_evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in stack.prometheus.rule_groups() for r in g["rules"]]
        return rules if all(r.get("lastEvaluation", "").startswith("2") for r in rules) else None

    rules = wait_for(all_evaluated, 20, "every rule to be evaluated once")
    assert len(rules) == len(all_rules(RULES_FILE))
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []


def label_values_become(
    stack: Stack, label: str, selector: str, want: list[str], what: str
) -> list[str]:
    """Wait until ``label_values(selector, label)`` is ``want``; fail naming the last answer."""
    last: list[str] = []

    def values() -> list[str] | None:
        last[:] = stack.prometheus.label_values(label, selector)
        return last if last == want else None

    return wait_for(values, 20, what, detail=lambda: f"last seen: {last}")


def test_dashboard_variables_resolve(stack: Stack) -> None:
    """Each variable's label_values query, chained with All, lists the configured values.

    Both exporters' values: the probe variable lists the workload exporter's profiles too,
    once Prometheus has scraped it.
    """
    dashboard = load_dashboard()
    expected = {
        "job": [SCRAPE_JOB],
        "target": ["sim"],
        "model": sorted([FAST_MODEL, OTHER_MODEL, MISSING_MODEL]),
        "probe": sorted(["short", *WORKLOAD_PROBES]),
    }
    found = {}
    for var in dashboard["templating"]["list"]:
        if var["name"] not in LABEL_VARIABLES:
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
        assert match is not None, var["query"]
        selector, label = substitute(match.group(1), ALL), match.group(2)
        found[var["name"]] = label_values_become(
            stack, label, selector, expected[var["name"]], f"values of ${var['name']}"
        )
    assert found == expected


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    """Every panel query, with All selected, is valid and returns a finite sample."""
    queries = dashboard_queries(ALL)
    assert len(queries) >= 30
    missing: list[str] = []

    def all_answer() -> bool | None:
        missing[:] = [name for name, expr in queries if not finite(stack.prometheus.query(expr))]
        return True if not missing else None

    what = "every dashboard query to return data"
    wait_for(all_answer, 45, what, detail=lambda: f"still empty: {missing}")


def test_dashboard_queries_honour_a_selection(stack: Stack) -> None:
    """With two models selected (regex-escaped as Grafana does), no query returns a third."""
    selection = {**ALL, "model": r"(llama3\\.2:1b|qwen3:0\\.6b)", "target": "sim"}
    for name, expr in dashboard_queries(selection):
        for item in stack.prometheus.query(expr):
            assert item["metric"].get("model", FAST_MODEL) in (FAST_MODEL, OTHER_MODEL), name


def test_failing_alert_is_raised_with_the_top_reason(stack: Stack) -> None:
    """OllamaProbeFailing goes active for the missing model only, naming model_not_found.

    With the shipped 5 m ``for:`` it is pending here; firing after ``for:`` is Prometheus's
    part, which tests/rules/failing_test.yml covers in simulated time.
    """
    alert = wait_for(
        lambda: active_alerts(stack, "OllamaProbeFailing").get(MISSING_MODEL),
        30,
        "OllamaProbeFailing to be raised for the missing model",
    )
    assert alert["state"] in ("pending", "firing")
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["description"] == (
        "100% of the probes finished in the last 10m failed (threshold 20%). "
        "Most frequent reason: model_not_found."
    )
    assert set(active_alerts(stack, "OllamaProbeFailing")) == {MISSING_MODEL}
