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
    "failureRatio": 0.35,
    "failingFor": "10m",
    "ttftSloSeconds": 2.5,
    "ttftFor": "20m",
    "staleAfter": "1h30m",
    "exporterDownFor": "2m",
    "coldLoadRatio": 0.1,
    "coldLoadFor": "10m",
    "residentModels": r"llama3\.2:.*|qwen3:.*",
    "tokensPerSecondFloors": {"llama3.2:1b": 40, "qwen3:0.6b": 2.5},
    "runbookBaseUrl": "https://wiki.example.com/ollama/alerts",
}
"""A value for every tuning key, each different from the rules file's own."""

FAILING_TEST = REPO_ROOT / "tests" / "rules" / "failing_test.yml"
FLOOR = "model:ollama_probe_tokens_per_second:floor"


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
        ("failureRatio", ":ollama_probe_failure_ratio:threshold", "vector(0.35)"),
        ("ttftSloSeconds", ":ollama_probe_ttft_slo_seconds:threshold", "vector(2.5)"),
        ("staleAfter", ":ollama_probe_stale_after_seconds:threshold", "vector(5400)"),
        ("coldLoadRatio", ":ollama_probe_cold_load_ratio:threshold", "vector(0.1)"),
    ],
)
def test_a_threshold_replaces_its_constant_rule(
    key: str, record: str, expr: str, default: dict[str, Any], tuned: dict[str, Any]
) -> None:
    """Each threshold value becomes the ``vector(...)`` of its rule (staleAfter in seconds)."""
    assert TUNED[key] is not None
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
    ],
)
def test_a_duration_replaces_for_and_the_annotations_that_quote_it(
    key: str,
    alerts: list[tuple[str, dict[str, str]]],
    default: dict[str, Any],
    tuned: dict[str, Any],
) -> None:
    """A duration sets the alert's ``for:``, and "for <old>" in its text becomes "for <new>"."""
    new = TUNED[key]
    for name, labels in alerts:
        before, after = the_rule(default, name, **labels), the_rule(tuned, name, **labels)
        assert (before["for"], after["for"]) != (new, new)
        assert after["for"] == new
        expected = {
            field: text.replace(f"for {before['for']}", f"for {new}")
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
                group.get("interval"),
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
        r["record"] for r in rules(default) if "record" in r and not r["record"].startswith(":")
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

    cold = re.search(r'model=~"([^"]+)"', the_rule(default, "OllamaModelColdLoads")["expr"])
    runbook = the_rule(default, "OllamaProbeFailing")["annotations"]["runbook_url"]
    assert cold is not None
    assert stated == {
        "throughputDropRatio": constant(":ollama_probe_throughput_drop_ratio:threshold"),
        "throughputDropFor": duration("OllamaProbeThroughputDrop", comparison="7d_median"),
        "failureRatio": constant(":ollama_probe_failure_ratio:threshold"),
        "failingFor": duration("OllamaProbeFailing"),
        "ttftSloSeconds": constant(":ollama_probe_ttft_slo_seconds:threshold"),
        "ttftFor": duration("OllamaProbeTTFTHigh"),
        "staleAfter": duration("OllamaProbeStale", cause="never_probed"),
        "exporterDownFor": duration("OllamaProbeStale", cause="exporter_down"),
        "coldLoadRatio": constant(":ollama_probe_cold_load_ratio:threshold"),
        "coldLoadFor": duration("OllamaModelColdLoads"),
        "residentModels": cold.group(1),
        "runbookBaseUrl": runbook.partition("#")[0],
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"failureRatio": 1.5},
        {"throughputDropRatio": 0},
        {"ttftFor": "15 minutes"},
        {"staleAfter": "900ms"},
        {"tokensPerSecondFloors": {"llama3.2:1b": "fast"}},
        {"runbookBaseUrl": "https://example.com/docs#section"},
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
