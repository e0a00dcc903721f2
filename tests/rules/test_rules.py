"""The shipped Prometheus rules file: valid, unit-tested, thresholds written once, not dead."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboard.workloads import exported_labels
from tests.support.prometheus import (
    REPO_ROOT,
    RULE_TESTS_DIR,
    RULES_FILE,
    all_rules,
    bucket_bounds,
    metric_names,
    promtool,
    raw_metrics,
    recorded_metrics,
    rule_groups,
)

UNIT_TEST_FILES = sorted(RULE_TESTS_DIR.glob("*_test.yml"))
ALERTING_DOC = REPO_ROOT / "docs" / "alerting.md"
USER_DEFINED = {"model:ollama_probe_tokens_per_second:floor"}
"""Recorded series the rules read but users define (per-model floors, docs/alerting.md)."""
THRESHOLD = re.compile(r":\w+:threshold")
"""A threshold constant: a label-less recorded series (empty level), docs/alerting.md."""
STALE_THRESHOLD = ":ollama_probe_stale_after_seconds:threshold"


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in all_rules() if "alert" in rule]


def unit_tests() -> list[dict[str, Any]]:
    """Every ``alert_rule_test`` case of every promtool unit-test file."""
    cases = []
    for path in UNIT_TEST_FILES:
        for group in yaml.safe_load(path.read_text())["tests"]:
            cases.extend(group.get("alert_rule_test", []))
    return cases


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


class TestThresholds:
    def test_thresholds_are_constants_ahead_of_the_alerts_in_their_group(self) -> None:
        """Each threshold is a label-less ``vector(<number>)`` before every alert of its group.

        The chart tunes a threshold by replacing that ``vector(...)``, found by record name.
        Rules of a group run in order, so the alerts read this evaluation's thresholds; from
        another group they could read none (older than the 5 m lookback at long intervals).
        """
        (group,) = [g for g in rule_groups() if any("alert" in r for r in g["rules"])]
        kinds = [
            "threshold" if THRESHOLD.fullmatch(r.get("record", "")) else "alert"
            for r in group["rules"]
        ]
        assert kinds == sorted(kinds, reverse=True)
        assert kinds.count("threshold") == 8
        thresholds = [
            r for g in rule_groups() for r in g["rules"] if THRESHOLD.fullmatch(r.get("record", ""))
        ]
        for rule in thresholds:
            assert re.fullmatch(r"vector\([0-9.]+\)", rule["expr"]), rule
            assert "labels" not in rule, rule

    def test_every_threshold_is_read_by_an_alert_and_its_annotations(self) -> None:
        """An alert compares against each threshold and prints it from the same series.

        So a tuned threshold changes what fires and what the notification says, together.
        """
        records = [r["record"] for r in all_rules() if THRESHOLD.fullmatch(r.get("record", ""))]
        for record in records:
            readers = [rule for rule in alerts() if record in rule["expr"]]
            assert readers, f"no alert reads {record}"
            for rule in readers:
                assert f"on () group_left ()\n  {record}" in rule["expr"], rule["alert"]
                assert f'query "{record}"' in " ".join(rule["annotations"].values()), rule["alert"]

    def test_stale_threshold_and_never_probed_for_agree(self) -> None:
        """The never_probed variant waits as long as the stale threshold (seconds vs duration)."""
        (never,) = [r for r in alerts() if r["labels"].get("cause") == "never_probed"]
        (stale,) = [r for r in all_rules() if r.get("record") == STALE_THRESHOLD]
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
        parts = re.findall(r"([0-9]+)([smhdw])", never["for"])
        seconds = sum(int(number) * units[unit] for number, unit in parts)
        assert stale["expr"] == f"vector({seconds})"

    def test_alerts_compare_with_no_literal_threshold(self) -> None:
        """No alert compares with a literal number, except its probe-count guard (``>= 20``).

        A literal threshold would be out of reach of the chart's values and of the
        threshold constants, which is where docs/alerting.md tells people to tune.
        """
        for rule in alerts():
            expr = rule["expr"].replace(">= 20", "")
            assert not re.search(r"[<>]=?\s*[0-9]", expr), (rule["alert"], expr)


class TestPromtool:
    def test_shipped_rules_pass_check_rules(self) -> None:
        """promtool check rules (with the duplicate-rule lint fatal) accepts the shipped file."""
        result = promtool("check", "rules", "--lint=all", "--lint-fatal", str(RULES_FILE))
        assert result.returncode == 0, result.stdout + result.stderr

    @pytest.mark.parametrize("test_file", UNIT_TEST_FILES, ids=lambda path: path.name)
    def test_unit_tests_pass(self, test_file: Path) -> None:
        """Each promtool unit-test file passes against the shipped rules."""
        result = promtool("test", "rules", test_file.name, cwd=RULE_TESTS_DIR)
        assert result.returncode == 0, result.stdout + result.stderr


class TestCoverage:
    def test_every_alert_fires_in_a_unit_test(self) -> None:
        """Every alert rule (each variant, told apart by its labels) fires in some unit test."""
        fired = [
            (case["alertname"], alert.get("exp_labels", {}))
            for case in unit_tests()
            for alert in case.get("exp_alerts") or []
        ]
        for rule in alerts():
            labels = rule["labels"]
            assert any(
                name == rule["alert"] and labels.items() <= exp.items() for name, exp in fired
            ), f"no unit test fires {rule['alert']} {labels}"

    def test_every_alert_stays_silent_in_a_unit_test(self) -> None:
        """Every alert name has a unit-test case where it must not fire."""
        silent = {case["alertname"] for case in unit_tests() if not case.get("exp_alerts")}
        assert {rule["alert"] for rule in alerts()} <= silent

    def test_unit_tests_check_every_annotation(self) -> None:
        """Every expected alert in the unit tests spells out all its annotations."""
        for case in unit_tests():
            for alert in case.get("exp_alerts") or []:
                assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}


class TestAlertMetadata:
    def test_alerts_have_severity_summary_description_and_runbook(self) -> None:
        """Each alert has a known severity, a summary, a description and a runbook_url."""
        for rule in alerts():
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
            assert all(value.strip() for value in rule["annotations"].values())

    def test_runbook_urls_point_at_sections_of_the_alerting_docs(self) -> None:
        """Every runbook_url anchor is a heading of docs/alerting.md."""
        headings = re.findall(r"^#+ (.+)$", ALERTING_DOC.read_text(), re.MULTILINE)
        anchors = {github_anchor(heading) for heading in headings}
        for rule in alerts():
            page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
            assert page.endswith("docs/alerting.md")
            assert anchor in anchors, f"{rule['alert']}: no section #{anchor}"

    def test_alerting_docs_cover_every_alert(self) -> None:
        """docs/alerting.md has a section for each alert name."""
        text = ALERTING_DOC.read_text()
        for name in {rule["alert"] for rule in alerts()}:
            assert re.search(rf"^## {name}$", text, re.MULTILINE), name


class TestNoDeadRules:
    def test_rules_read_only_metrics_the_exporter_exports(self, exposition: str) -> None:
        """Every exporter metric a rule reads is in the real exposition (no dead rules)."""
        exported = metric_names(exposition)
        for rule in all_rules():
            missing = raw_metrics(rule["expr"]) - exported
            assert not missing, f"{rule.get('record') or rule.get('alert')}: {missing}"

    def test_rules_read_only_recorded_series_that_are_defined(self) -> None:
        """Every level:metric:operations series a rule reads is recorded by the rules file."""
        records = {rule["record"] for rule in all_rules() if "record" in rule}
        for rule in all_rules():
            missing = recorded_metrics(rule["expr"]) - records - USER_DEFINED
            assert not missing, f"{rule.get('record') or rule.get('alert')}: {missing}"

    def test_bucket_bounds_in_rules_are_exported(self, exposition: str) -> None:
        """Every ``le`` a rule selects is a bucket bound the exporter exposes, spelled alike."""
        for rule in all_rules():
            for metric, le in re.findall(
                r'(ollama_probe_\w+)_bucket\{le="([^"]+)"\}', rule["expr"]
            ):
                assert le in bucket_bounds(exposition, metric), (metric, le)

    def test_unit_test_inputs_use_exported_series(self, exposition: str) -> None:
        """The unit tests' input series have the exporter's names, labels and ``le`` spelling.

        Each has the config labels the exporter gives that metric (``target``, ``model``, and
        ``probe`` except on the per-model inventory), and no label it does not give, besides
        the ``job`` and ``instance`` that Prometheus adds.
        """
        exported = exported_labels(exposition)
        for path in UNIT_TEST_FILES:
            for group in yaml.safe_load(path.read_text())["tests"]:
                for item in group["input_series"]:
                    name, _, labels = item["series"].partition("{")
                    if name == "up" or name in USER_DEFINED:
                        continue
                    assert name in exported, (path.name, name)
                    keys = set(re.findall(r'(\w+)="', labels)) - {"job", "instance"}
                    assert keys <= exported[name], (path.name, item, exported[name])
                    assert exported[name] & {"target", "model", "probe"} <= keys, item
                    le = re.search(r'le="([^"]+)"', labels)
                    if le is not None:
                        metric = name.removesuffix("_bucket")
                        assert le.group(1) in bucket_bounds(exposition, metric), (path.name, le)
