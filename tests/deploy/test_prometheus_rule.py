"""The chart's PrometheusRule: the shipped rules file, with the prometheusRule.* tuning applied.

Each tuning value must change exactly its part of the rendered rules, keep them valid for
promtool, and change what really fires: a few cases rerun a promtool unit test on the render.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.deploy.support import REPO_ROOT, find
from tests.support.tools import run_tool
from tools.manifests import CHART_DIR, OPERATOR_VALUES, chart_archive, render

TUNED: dict[str, Any] = {
    "throughputDropRatio": 0.5,
    "throughputDropFor": "30m",
    "throughputBaselineWindow": "14d",
    "throughputBaselineMinHistory": "4d",
    "throughputBaselineInterval": "1m",
    "failureRatio": 0.35,
    "failingFor": "10m",
    "ttftSloSeconds": 2.5,
    "ttftFor": "20m",
    "staleAfter": "1h30m",
    "exporterDownFor": "2m",
    "coldLoadRatio": 0.1,
    "coldLoadFor": "10m",
    "residentModels": r"llama3\.2:.*|qwen3:.*",
    "partialOffloadFor": "30m",
    "exporterLoopLagSeconds": 0.01,
    "exporterStartDelaySeconds": 0.25,
    "exporterOverloadedFor": "20m",
    "tokensPerSecondFloors": {"llama3.2:1b": 40, "qwen3:0.6b": 2.5},
    "runbookBaseUrl": "https://wiki.example.com/ollama/alerts",
}
"""A value for every tuning key, each different from the rules file's own."""

RULE_TESTS = REPO_ROOT / "tests" / "rules"
FAILING_TEST = RULE_TESTS / "failing_test.yml"
OVERLOADED_TEST = RULE_TESTS / "exporter_overloaded_test.yml"
FLOOR = "model:ollama_probe_tokens_per_second:floor"
MEDIAN = "job_target_model_probe:ollama_probe_tokens_per_second:median7d_mean_rate30m"
HISTORY = "job_target_model_probe:ollama_probe_tokens_per_second:history_seconds7d_mean_rate30m"
BASELINE = (MEDIAN, HISTORY)
"""The baseline rules, whose range (and group interval) the baseline values replace."""


def prometheus_rule_spec(tuning: dict[str, Any]) -> dict[str, Any]:
    """The rendered PrometheusRule's spec with ``tuning`` under prometheusRule."""
    values = {**OPERATOR_VALUES, "prometheusRule": {"enabled": True, **tuning}}
    spec: dict[str, Any] = find(render(values), "PrometheusRule").obj["spec"]
    return spec


@pytest.fixture(scope="module")
def default() -> dict[str, Any]:
    return prometheus_rule_spec({})


@pytest.fixture(scope="module")
def tuned() -> dict[str, Any]:
    return prometheus_rule_spec(TUNED)


def rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in spec["groups"] for rule in group["rules"]]


def the_rule(spec: dict[str, Any], name: str, **labels: str) -> dict[str, Any]:
    """The only recording rule or alert called ``name`` whose labels include ``labels``."""
    found = [
        rule
        for rule in rules(spec)
        if name in (rule.get("record"), rule.get("alert"))
        and labels.items() <= rule.get("labels", {}).items()
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


@pytest.mark.parametrize(
    ("key", "record", "expr"),
    [
        ("throughputDropRatio", ":ollama_probe_throughput_drop_ratio:threshold", "vector(0.5)"),
        (
            "throughputBaselineMinHistory",
            ":ollama_probe_throughput_baseline_history_seconds:threshold",
            "vector(345600)",
        ),
        ("failureRatio", ":ollama_probe_failure_ratio:threshold", "vector(0.35)"),
        ("ttftSloSeconds", ":ollama_probe_ttft_slo_seconds:threshold", "vector(2.5)"),
        ("staleAfter", ":ollama_probe_stale_after_seconds:threshold", "vector(5400)"),
        ("coldLoadRatio", ":ollama_probe_cold_load_ratio:threshold", "vector(0.1)"),
        (
            "exporterLoopLagSeconds",
            ":ollama_probe_exporter_loop_lag_seconds:threshold",
            "vector(0.01)",
        ),
        (
            "exporterStartDelaySeconds",
            ":ollama_probe_exporter_start_delay_seconds:threshold",
            "vector(0.25)",
        ),
    ],
)
def test_a_threshold_replaces_its_constant_rule(
    key: str, record: str, expr: str, default: dict[str, Any], tuned: dict[str, Any]
) -> None:
    """Each threshold value becomes the ``vector(...)`` of its rule (staleAfter in seconds)."""
    assert the_rule(default, record)["expr"] != expr
    assert the_rule(tuned, record)["expr"] == expr


@pytest.mark.parametrize(
    ("key", "alerts"),
    [
        (
            "throughputDropFor",
            [
                ("OllamaProbeThroughputDrop", {"comparison": "7d_median"}),
                ("OllamaProbeThroughputDrop", {"comparison": "floor"}),
            ],
        ),
        ("failingFor", [("OllamaProbeFailing", {})]),
        ("ttftFor", [("OllamaProbeTTFTHigh", {})]),
        ("staleAfter", [("OllamaProbeStale", {"cause": "never_probed"})]),
        (
            "exporterDownFor",
            [
                ("OllamaProbeStale", {"cause": "exporter_down"}),
                ("OllamaProbeStale", {"cause": "exporter_absent"}),
            ],
        ),
        ("coldLoadFor", [("OllamaModelColdLoads", {})]),
        ("partialOffloadFor", [("OllamaModelPartialOffload", {})]),
        ("exporterOverloadedFor", [("OllamaProbeExporterOverloaded", {})]),
    ],
)
def test_a_duration_replaces_for_and_the_annotations_that_quote_it(
    key: str,
    alerts: list[tuple[str, dict[str, str]]],
    default: dict[str, Any],
    tuned: dict[str, Any],
) -> None:
    """A duration sets the alert's ``for:``, and "for <old>" in its text becomes "for <new>".

    (The 7d_median text also names the tuned baseline window.)
    """
    new = TUNED[key]
    for name, labels in alerts:
        before, after = the_rule(default, name, **labels), the_rule(tuned, name, **labels)
        assert before["for"] != new
        assert after["for"] == new
        window = f"{TUNED['throughputBaselineWindow']} median"
        expected = {
            field: text.replace(f"for {before['for']}", f"for {new}").replace("7d median", window)
            for field, text in before["annotations"].items()
            if field != "runbook_url"
        }
        assert {k: v for k, v in after["annotations"].items() if k != "runbook_url"} == expected


def test_durations_quoted_in_annotations_are_the_tuned_ones(tuned: dict[str, Any]) -> None:
    """No tuned alert still tells the on-call person the old duration."""
    for rule in rules(tuned):
        if "alert" in rule and "for" in rule:
            for text in rule["annotations"].values():
                quoted = re.findall(r"\bfor ((?:\d+[a-z]+)+)", text)
                assert all(duration == rule["for"] for duration in quoted), (rule["alert"], text)


def baseline_group(spec: dict[str, Any]) -> dict[str, Any]:
    """The group of the baseline rules."""
    (group,) = [g for g in spec["groups"] if any(r.get("record") == MEDIAN for r in g["rules"])]
    return group


def test_baseline_window_replaces_the_range_and_the_quoted_window(
    default: dict[str, Any], tuned: dict[str, Any]
) -> None:
    """throughputBaselineWindow sets the range of both baseline rules; names keep ``7d``.

    The 7d_median alert's text names the window in force; nothing else in it changes.
    """
    for record in BASELINE:
        before, after = the_rule(default, record), the_rule(tuned, record)
        assert "[7d" in before["expr"]
        assert after == {**before, "expr": before["expr"].replace("[7d", "[14d")}
    assert the_rule(tuned, HISTORY)["expr"].endswith("[14d:1h])")
    before = the_rule(default, "OllamaProbeThroughputDrop", comparison="7d_median")
    after = the_rule(tuned, "OllamaProbeThroughputDrop", comparison="7d_median")
    assert "of its 7d median" in before["annotations"]["summary"]
    for field in ("summary", "description"):
        text = before["annotations"][field].replace("for 15m", "for 30m")
        assert after["annotations"][field] == text.replace("7d median", "14d median")
        assert "7d median" not in after["annotations"][field]


def test_baseline_interval_sets_its_group_interval(
    default: dict[str, Any], tuned: dict[str, Any]
) -> None:
    """throughputBaselineInterval is the baseline group's ``interval:``; no other group has one."""
    assert baseline_group(default)["interval"] == "2m"
    assert baseline_group(tuned)["interval"] == "1m"
    others = [g for g in tuned["groups"] if g is not baseline_group(tuned)]
    assert [g.get("interval") for g in others] == [None] * len(others)


@pytest.mark.parametrize(
    ("tuning", "message"),
    [
        ({"throughputBaselineMinHistory": "8d"}, "longer than its window"),
        ({"throughputBaselineWindow": "2d"}, "longer than its window"),
        ({"throughputBaselineInterval": "5m"}, "not under Prometheus's 5m lookback"),
    ],
    ids=["history-over-window", "window-under-history", "interval-at-lookback"],
)
def test_baseline_values_that_cannot_work_fail_the_render(
    tuning: dict[str, Any], message: str
) -> None:
    """A maturity longer than the window, or an interval at the lookback, stops the render."""
    with pytest.raises(helm.HelmRenderError, match=message):
        prometheus_rule_spec(tuning)


def test_resident_models_replace_the_cold_load_matcher(
    default: dict[str, Any], tuned: dict[str, Any]
) -> None:
    """residentModels becomes the model matcher, escaped as PromQL needs (``\\\\.``)."""
    assert 'model=~".+"' in the_rule(default, "OllamaModelColdLoads")["expr"]
    expr = the_rule(tuned, "OllamaModelColdLoads")["expr"]
    assert 'model=~"llama3\\\\.2:.*|qwen3:.*"' in expr
    assert 'model=~".+"' not in expr


def test_floors_add_one_rule_per_model(default: dict[str, Any], tuned: dict[str, Any]) -> None:
    """tokensPerSecondFloors adds a floor rule per model, first in the thresholds' group."""
    assert [r for r in rules(default) if r.get("record") == FLOOR] == []
    floors = [(r["labels"], r["expr"]) for r in rules(tuned) if r.get("record") == FLOOR]
    assert floors == [
        ({"model": "llama3.2:1b"}, "vector(40)"),
        ({"model": "qwen3:0.6b"}, "vector(2.5)"),
    ]


def test_runbook_base_url_keeps_each_section(
    default: dict[str, Any], tuned: dict[str, Any]
) -> None:
    """runbookBaseUrl replaces the page of every runbook_url; each keeps its own #section."""
    before = [r["annotations"]["runbook_url"] for r in rules(default) if "alert" in r]
    after = [r["annotations"]["runbook_url"] for r in rules(tuned) if "alert" in r]
    sections = [url.partition("#")[2] for url in before]
    assert all(sections)
    assert after == [f"{TUNED['runbookBaseUrl']}#{section}" for section in sections]


def test_tuning_touches_nothing_else(default: dict[str, Any], tuned: dict[str, Any]) -> None:
    """Groups, rule order, names, labels and the other recording rules stay as shipped."""

    def skeleton(spec: dict[str, Any]) -> list[Any]:
        return [
            (
                group["name"],
                None if baseline_group(spec) is group else group.get("interval"),
                [
                    (r.get("record"), r.get("alert"), r.get("labels"), sorted(r))
                    for r in group["rules"]
                    if r.get("record") != FLOOR
                ],
            )
            for group in spec["groups"]
        ]

    assert skeleton(tuned) == skeleton(default)
    unchanged = [
        r["record"]
        for r in rules(default)
        if "record" in r and not r["record"].startswith(":") and r["record"] not in BASELINE
    ]
    for record in unchanged:
        assert the_rule(tuned, record) == the_rule(default, record)


@pytest.mark.parametrize("tuning", [{}, TUNED], ids=["default", "tuned"])
def test_rendered_groups_pass_promtool_lint(tuning: dict[str, Any], tmp_path: Path) -> None:
    """The rendered spec, as a rules file, passes ``promtool check rules --lint=all``."""
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(prometheus_rule_spec(tuning)))
    result = run_tool("promtool", "check", "rules", "--lint=all", "--lint-fatal", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("tuning", "eval_time", "threshold"),
    [
        ({}, "25m", "20%"),
        ({"failureRatio": 0.5}, "25m", "50%"),
        ({"failureRatio": 0.8}, "25m", None),
        ({"failingFor": "20m"}, "25m", None),
        ({"failingFor": "20m"}, "38m", "20%"),
    ],
    ids=["default", "ratio-below", "ratio-above", "longer-for-pending", "longer-for-firing"],
)
def test_tuning_changes_what_fires(
    tuning: dict[str, Any], eval_time: str, threshold: str | None, tmp_path: Path
) -> None:
    """tests/rules/failing_test.yml rerun on the render: 75% of probes fail from minute 11.

    The failure ratio decides whether it fires and the text names it; a longer ``for:``
    delays it. So the values reach the alert's behaviour, not only its YAML.
    """
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(yaml.safe_dump(prometheus_rule_spec(tuning)))
    unit = yaml.safe_load(FAILING_TEST.read_text())
    (case,) = [c for c in unit["tests"][0]["alert_rule_test"] if c["exp_alerts"]]
    (alert,) = case["exp_alerts"]
    if threshold is None:
        alert = None
    else:
        text = alert["exp_annotations"]["description"]
        assert "(threshold 20%)" in text
        alert["exp_annotations"]["description"] = text.replace("20%", threshold)
    case.update(eval_time=eval_time, exp_alerts=[alert] if alert else [])
    unit.update(rule_files=[str(rules_path)])
    unit["tests"][0]["alert_rule_test"] = [case]
    test_file = tmp_path / "failing_test.yml"
    test_file.write_text(yaml.safe_dump(unit))
    result = run_tool("promtool", "test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def throughput_drop(target: str, history: str) -> Any:
    """The OllamaProbeThroughputDrop (7d_median) alert of a job at 80 tokens/s against 120."""
    return {
        "exp_labels": {
            "severity": "warning",
            "comparison": "7d_median",
            "job": "ollama-probe",
            "target": target,
            "model": "llama3.2:1b",
            "probe": "short",
        },
        "exp_annotations": {
            "summary": f"llama3.2:1b on {target} (probe short): tokens/s below 70% of its 7d median",
            "description": (
                "Client decode rate over the last 30m is 80 tokens/s, 66.67% of its 7d median"
                " (120 tokens/s); below 70% for 15m. The median stands on at least"
                f" {history} of history."
            ),
            "runbook_url": (
                "https://github.com/ollama-probe-exporter/ollama-probe-exporter/blob/main/"
                "docs/alerting.md#ollamaprobethroughputdrop"
            ),
        },
    }


@pytest.mark.parametrize(
    ("test_file", "tuning", "eval_time", "expected"),
    [
        ("throughput_day_night_test.yml", {"throughputDropRatio": 0.6}, "3d16h", None),
        ("throughput_baseline_test.yml", {}, "9h", None),
        (
            "throughput_baseline_test.yml",
            {"throughputBaselineMinHistory": "8h"},
            "9h",
            throughput_drop("gpu-2", "8h 0m 0s"),
        ),
    ],
    ids=["day-night-ratio-0.6", "drift", "drift-maturity-8h"],
)
def test_baseline_tuning_changes_what_fires(
    test_file: str, tuning: dict[str, Any], eval_time: str, expected: Any, tmp_path: Path
) -> None:
    """A throughput unit test rerun on the render, at one time, with a baseline value set.

    Day/night (14 h at 120 tokens/s, 10 h at 80) fires on day 4 against its mature median of
    120, and a ratio below busy / quiet silences it (the advice in docs/alerting.md). The
    drift (8 h at 120, then 80) is silent at 9 h; with a maturity of 8 h it fires there, as
    it did before maturity existed.

    The day/night case has no untuned run here: untuned, the render is the shipped file
    (``test_helm_chart``), whose own unit test asserts the same alert at the same time, and
    its four days of rule evaluations are the dearest promtool run of the suite.
    """
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(yaml.safe_dump(prometheus_rule_spec(tuning)))
    unit = yaml.safe_load((RULE_TESTS / test_file).read_text())
    group = unit["tests"][0]
    group.pop("promql_expr_test", None)
    group["alert_rule_test"] = [
        {
            "eval_time": eval_time,
            "alertname": "OllamaProbeThroughputDrop",
            "exp_alerts": [expected] if expected else [],
        }
    ]
    unit.update(rule_files=[str(rules_path)], tests=[group])
    path = tmp_path / test_file
    path.write_text(yaml.safe_dump(unit))
    result = run_tool("promtool", "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def overloaded(
    instance: str,
    lag: str,
    start: str,
    *,
    max_lag: str = "5ms",
    max_start: str = "100ms",
    duration: str = "15m",
) -> Any:
    """The OllamaProbeExporterOverloaded alert of an exporter instance with these p99s; the
    keywords are the thresholds and ``for:`` its text names (the rules file's by default)."""
    return {
        "exp_labels": {"severity": "warning", "job": "ollama-probe", "instance": instance},
        "exp_annotations": {
            "summary": (
                f"ollama-probe-exporter {instance} runs late: its own delay distorts the probe"
                " timings"
            ),
            "description": (
                f"Over the last 5m, the p99 of the exporter's event-loop lag is {lag}"
                f" (threshold {max_lag}) and the p99 of its runs' start delay is {start}"
                f" (threshold {max_start}); one or the other has been above its threshold"
                f" for {duration}. The exporter on {instance} is most"
                " likely short of CPU, and its own delay is in the TTFT and durations it"
                " reports."
            ),
            "runbook_url": (
                "https://github.com/ollama-probe-exporter/ollama-probe-exporter/blob/main/"
                "docs/alerting.md#ollamaprobeexporteroverloaded"
            ),
        },
    }


@pytest.mark.parametrize(
    ("tuning", "eval_time", "expected"),
    [
        (
            {},
            "57m",
            [
                overloaded("exporter-2:10434", "40ms", "75ms"),
                overloaded("exporter-3:10434", "1.667ms", "750ms"),
            ],
        ),
        (
            {"exporterLoopLagSeconds": 0.05},
            "57m",
            [overloaded("exporter-3:10434", "1.667ms", "750ms", max_lag="50ms")],
        ),
        (
            {"exporterStartDelaySeconds": 1},
            "57m",
            [overloaded("exporter-2:10434", "40ms", "75ms", max_start="1s")],
        ),
        (
            {"exporterOverloadedFor": "5m"},
            "77m",
            [
                overloaded("exporter-2:10434", "40ms", "75ms", duration="5m"),
                overloaded("exporter-3:10434", "1.667ms", "750ms", duration="5m"),
                overloaded("exporter-4:10434", "40ms", "4.7ms", duration="5m"),
            ],
        ),
    ],
    ids=["default", "loop-lag-50ms", "start-delay-1s", "for-5m-fires-the-blip"],
)
def test_overloaded_tuning_changes_what_fires(
    tuning: dict[str, Any], eval_time: str, expected: list[Any], tmp_path: Path
) -> None:
    """tests/rules/exporter_overloaded_test.yml rerun on the render, at one time.

    A loop-lag threshold above exporter-2's 40 ms silences it, a start-delay threshold above
    exporter-3's 750 ms silences that one, and the text names the threshold in force; a
    ``for:`` shorter than exporter-4's 9-minute blip lets the blip fire.
    """
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(yaml.safe_dump(prometheus_rule_spec(tuning)))
    unit = yaml.safe_load(OVERLOADED_TEST.read_text())
    group = unit["tests"][0]
    group["alert_rule_test"] = [
        {
            "eval_time": eval_time,
            "alertname": "OllamaProbeExporterOverloaded",
            "exp_alerts": expected,
        }
    ]
    unit.update(rule_files=[str(rules_path)], tests=[group])
    path = tmp_path / OVERLOADED_TEST.name
    path.write_text(yaml.safe_dump(unit))
    result = run_tool("promtool", "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_values_file_states_the_rules_file_defaults(default: dict[str, Any]) -> None:
    """Each ``key: ~  # rules file: X`` in values.yaml is what the rules file really says.

    The values themselves stay empty so the rules file remains the one source; the comments
    are documentation, and this keeps them honest.
    """
    text = (CHART_DIR / "values.yaml").read_text()
    stated = dict(re.findall(r"^  (\w+): ~ +# rules file: (\S+)$", text, re.MULTILINE))

    def constant(record: str) -> str:
        return the_rule(default, record)["expr"].removeprefix("vector(").removesuffix(")")

    def duration(alert: str, **labels: str) -> str:
        return str(the_rule(default, alert, **labels)["for"])

    def days(record: str) -> str:
        seconds = int(constant(record))
        assert seconds % 86400 == 0, seconds
        return f"{seconds // 86400}d"

    window = re.search(r"\[(\w+)\]", the_rule(default, MEDIAN)["expr"])
    assert window is not None
    cold = re.search(r'model=~"([^"]+)"', the_rule(default, "OllamaModelColdLoads")["expr"])
    runbook = the_rule(default, "OllamaProbeFailing")["annotations"]["runbook_url"]
    assert cold is not None
    assert stated == {
        "throughputDropRatio": constant(":ollama_probe_throughput_drop_ratio:threshold"),
        "throughputDropFor": duration("OllamaProbeThroughputDrop", comparison="7d_median"),
        "throughputBaselineWindow": window.group(1),
        "throughputBaselineMinHistory": days(
            ":ollama_probe_throughput_baseline_history_seconds:threshold"
        ),
        "throughputBaselineInterval": baseline_group(default)["interval"],
        "failureRatio": constant(":ollama_probe_failure_ratio:threshold"),
        "failingFor": duration("OllamaProbeFailing"),
        "ttftSloSeconds": constant(":ollama_probe_ttft_slo_seconds:threshold"),
        "ttftFor": duration("OllamaProbeTTFTHigh"),
        "staleAfter": duration("OllamaProbeStale", cause="never_probed"),
        "exporterDownFor": duration("OllamaProbeStale", cause="exporter_down"),
        "coldLoadRatio": constant(":ollama_probe_cold_load_ratio:threshold"),
        "coldLoadFor": duration("OllamaModelColdLoads"),
        "residentModels": cold.group(1),
        "partialOffloadFor": duration("OllamaModelPartialOffload"),
        "exporterLoopLagSeconds": constant(":ollama_probe_exporter_loop_lag_seconds:threshold"),
        "exporterStartDelaySeconds": constant(
            ":ollama_probe_exporter_start_delay_seconds:threshold"
        ),
        "exporterOverloadedFor": duration("OllamaProbeExporterOverloaded"),
        "runbookBaseUrl": runbook.partition("#")[0],
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"failureRatio": 1.5},
        {"throughputDropRatio": 0},
        {"ttftFor": "15 minutes"},
        {"staleAfter": "900ms"},
        {"throughputBaselineWindow": "7 days"},
        {"throughputBaselineMinHistory": "1y"},
        {"throughputBaselineInterval": "90000ms"},
        {"tokensPerSecondFloors": {"llama3.2:1b": "fast"}},
        {"runbookBaseUrl": "https://example.com/docs#section"},
        {"exporterLoopLagSeconds": 0},
        {"exporterStartDelaySeconds": "100ms"},
        {"exporterOverloadedFor": "15 minutes"},
        {"failingRatio": 0.3},
    ],
    ids=lambda bad: next(iter(bad)),
)
def test_the_schema_refuses_bad_values(bad: dict[str, Any]) -> None:
    """values.schema.json refuses ratios outside (0, 1), non-durations and misspelt keys."""
    with helm.Chart.load_archive(chart_archive()) as chart:
        chart.validate_schema({"prometheusRule": {"enabled": True}})
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema({"prometheusRule": {"enabled": True, **bad}})


def test_alerting_docs_list_every_tuning_value() -> None:
    """Every tuning key of values.yaml has a row in docs/alerting.md's table of values."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["prometheusRule"]
    doc = (REPO_ROOT / "docs" / "alerting.md").read_text()
    keys = set(values) - {"enabled", "labels"}
    assert "throughputBaselineMinHistory" in keys
    assert sorted(k for k in keys if not re.search(rf"^\| `{k}` \|", doc, re.MULTILINE)) == []
