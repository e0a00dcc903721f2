"""The shipped Prometheus rules: generated from one source, valid, unit-tested, not dead."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.prometheus import (
    PROMETHEUS_RULE_FILE,
    REPO_ROOT,
    RULE_TESTS_DIR,
    RULES_FILE,
    all_rules,
    bucket_bounds,
    full_exposition,
    load_renderer,
    metric_names,
    probed_exporter,
    promtool,
    raw_metrics,
    recorded_metrics,
    rule_groups,
)

UNIT_TEST_FILES = sorted(RULE_TESTS_DIR.glob("*_test.yml"))
ALERTING_DOC = REPO_ROOT / "docs" / "alerting.md"
USER_DEFINED = {"model:ollama_probe_tokens_per_second:floor"}
"""Recorded series the rules read but users define (per-model floors, docs/alerting.md)."""


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real exporter's /metrics after it probed the simulator (success and failure)."""
    with probed_exporter(tmp_path_factory.mktemp("exporter")) as stack:
        yield full_exposition(stack)


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


class TestSingleSource:
    def test_rules_file_is_rendered_from_the_generator(self) -> None:
        """The committed rules file is exactly what render_rules.py renders by default."""
        renderer = load_renderer()
        assert RULES_FILE.read_text() == renderer.render_rules_file(renderer.Params())

    def test_prometheus_rule_is_rendered_from_the_generator(self) -> None:
        """The committed PrometheusRule is exactly what render_rules.py renders by default."""
        renderer = load_renderer()
        assert PROMETHEUS_RULE_FILE.read_text() == renderer.render_prometheus_rule(
            renderer.Params()
        )

    def test_prometheus_rule_holds_the_same_groups(self) -> None:
        """The PrometheusRule's spec.groups equal the rules file's groups."""
        manifest = yaml.safe_load(PROMETHEUS_RULE_FILE.read_text())
        assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
        assert manifest["kind"] == "PrometheusRule"
        assert manifest["spec"]["groups"] == rule_groups()

    def test_check_mode_reports_out_of_date_files(self, tmp_path: Path) -> None:
        """``render_rules.py --check`` fails on missing files and passes once written."""
        renderer = load_renderer()
        assert renderer.main(["--check", "--output-dir", str(tmp_path)]) == 1
        assert renderer.main(["--output-dir", str(tmp_path)]) == 0
        assert renderer.main(["--check", "--output-dir", str(tmp_path)]) == 0

    def test_bad_parameters_are_refused(self) -> None:
        """A window that is not a Prometheus duration and a ratio over 1 are refused."""
        renderer = load_renderer()
        with pytest.raises(ValueError, match="window"):
            renderer.Params(window="30 minutes")
        with pytest.raises(ValueError, match="throughput_drop_ratio"):
            renderer.Params(throughput_drop_ratio=1.5)


class TestPromtool:
    def test_shipped_rules_pass_check_rules(self) -> None:
        """promtool check rules (with the duplicate-rule lint fatal) accepts the shipped file."""
        result = promtool("check", "rules", "--lint=all", "--lint-fatal", str(RULES_FILE))
        assert result.returncode == 0, result.stdout + result.stderr

    def test_prometheus_rule_spec_passes_check_rules(self, tmp_path: Path) -> None:
        """The PrometheusRule's spec, written out as a rules file, passes promtool too."""
        spec = yaml.safe_load(PROMETHEUS_RULE_FILE.read_text())["spec"]
        rules = tmp_path / "spec.yml"
        rules.write_text(yaml.safe_dump(spec))
        result = promtool("check", "rules", "--lint=all", "--lint-fatal", str(rules))
        assert result.returncode == 0, result.stdout + result.stderr

    def test_rendered_variants_pass_check_rules(self, tmp_path: Path) -> None:
        """Re-rendered with floors, short windows and another SLO, the rules stay valid."""
        renderer = load_renderer()
        args = ["--output-dir", str(tmp_path), "--floor", "llama3.2:1b=40", "--floor", "x=2.5"]
        args += ["--set", "window=15m", "--set", "ttft_slo_seconds=2.5"]
        assert renderer.main(args) == 0
        result = promtool(
            "check", "rules", "--lint=all", "--lint-fatal", str(tmp_path / RULES_FILE.name)
        )
        assert result.returncode == 0, result.stdout + result.stderr
        floors = [
            rule
            for rule in all_rules(tmp_path / RULES_FILE.name)
            if rule.get("record") == "model:ollama_probe_tokens_per_second:floor"
        ]
        assert [(r["labels"]["model"], r["expr"]) for r in floors] == [
            ("llama3.2:1b", "vector(40)"),
            ("x", "vector(2.5)"),
        ]

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
        """The unit tests' input series have the exporter's names, labels and ``le`` spelling."""
        exported = metric_names(exposition)
        for path in UNIT_TEST_FILES:
            for group in yaml.safe_load(path.read_text())["tests"]:
                for item in group["input_series"]:
                    name, _, labels = item["series"].partition("{")
                    if name == "up" or name in USER_DEFINED:
                        continue
                    assert name in exported, (path.name, name)
                    assert all(f"{key}=" in labels for key in ("target", "model", "probe")), item
                    le = re.search(r'le="([^"]+)"', labels)
                    if le is not None:
                        metric = name.removesuffix("_bucket")
                        assert le.group(1) in bucket_bounds(exposition, metric), (path.name, le)
