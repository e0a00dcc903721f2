"""The Grafana dashboard JSON: importable, provisionable, and built on series that exist."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.prometheus import (
    REPO_ROOT,
    all_rules,
    dashboard_panels,
    full_exposition,
    load_dashboard,
    metric_names,
    panel_targets,
    probed_exporter,
    promtool,
    raw_metrics,
    recorded_metrics,
    substitute,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
LABEL_VARIABLES = ("job", "target", "model", "probe")
ROWS = ["Overview", "Throughput", "Latency", "Errors", "Cold loads"]
PROVISIONING = REPO_ROOT / "grafana" / "provisioning"
DASHBOARD_DOC = REPO_ROOT / "docs" / "dashboard.md"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real exporter's /metrics after it probed the simulator (success and failure)."""
    with probed_exporter(tmp_path_factory.mktemp("exporter")) as stack:
        yield full_exposition(stack)


def content_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard_panels(dashboard) if p["type"] != "row"]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def variable_query(variable: dict[str, Any]) -> str:
    query = variable["query"]
    text: str = query["query"] if isinstance(query, dict) else query
    return text


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


class TestImportable:
    def test_classic_schema_with_stable_uid(self, dashboard: dict[str, Any]) -> None:
        """Classic JSON (schemaVersion 39, id null) with a stable uid, importable in Grafana 10+."""
        assert dashboard["schemaVersion"] == 39
        assert dashboard["id"] is None
        assert dashboard["uid"] == "ollama-probe-exporter"
        assert "__inputs" not in dashboard

    def test_datasource_is_a_variable(self, dashboard: dict[str, Any]) -> None:
        """A ``datasource`` variable of type prometheus exists, and is listed first."""
        first = dashboard["templating"]["list"][0]
        assert (first["type"], first["name"], first["query"]) == (
            "datasource",
            "datasource",
            "prometheus",
        )

    def test_no_hard_coded_datasource(self, dashboard: dict[str, Any]) -> None:
        """Every datasource reference in the JSON is the ``${datasource}`` variable."""
        refs = [value for key, value in walk(dashboard) if key == "datasource"]
        assert refs
        assert all(ref == DATASOURCE for ref in refs), refs
        uids = {value for key, value in walk(dashboard) if key == "uid"}
        assert uids == {"ollama-probe-exporter", "${datasource}"}
        assert "DS_PROMETHEUS" not in str(dashboard)


class TestPanels:
    def test_panel_ids_are_unique(self, dashboard: dict[str, Any]) -> None:
        """No two panels (rows included) share an id."""
        ids = [panel["id"] for panel in dashboard_panels(dashboard)]
        assert len(ids) == len(set(ids))

    def test_rows_are_the_documented_ones(self, dashboard: dict[str, Any]) -> None:
        """The rows are Overview, Throughput, Latency, Errors and Cold loads, in this order."""
        rows = [p["title"] for p in dashboard_panels(dashboard) if p["type"] == "row"]
        assert rows == ROWS

    def test_every_panel_has_a_unit_and_a_description(self, dashboard: dict[str, Any]) -> None:
        """Every panel sets a unit and a description of a sentence or more."""
        for panel in content_panels(dashboard):
            assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
            assert len(panel.get("description", "")) >= 60, panel["title"]
            if panel["type"] == "heatmap":
                assert panel["options"]["yAxis"]["unit"] == panel["fieldConfig"]["defaults"]["unit"]

    def test_stat_panels_have_thresholds(self, dashboard: dict[str, Any]) -> None:
        """Stat panels colour by thresholds with at least one step above the base colour."""
        stats = [p for p in content_panels(dashboard) if p["type"] == "stat"]
        assert len(stats) >= 5
        for panel in stats:
            defaults = panel["fieldConfig"]["defaults"]
            assert defaults["color"]["mode"] == "thresholds", panel["title"]
            assert len(defaults["thresholds"]["steps"]) >= 2, panel["title"]

    def test_panels_do_not_overlap(self, dashboard: dict[str, Any]) -> None:
        """No two panels cover the same grid cell, and none is wider than the grid."""
        taken: dict[tuple[int, int], str] = {}
        for panel in dashboard_panels(dashboard):
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in taken, (panel["title"], taken.get((x, y)))
                    taken[(x, y)] = panel["title"]

    def test_heatmaps_read_histogram_buckets_per_le(self, dashboard: dict[str, Any]) -> None:
        """Heatmaps query ``sum by (le)`` of bucket increases, formatted as a heatmap."""
        for panel in content_panels(dashboard):
            if panel["type"] != "heatmap":
                continue
            (target,) = panel["targets"]
            assert target["format"] == "heatmap"
            assert target["legendFormat"] == "{{le}}"
            assert panel["options"]["calculate"] is False
            assert re.match(r"sum by \(le\) \(increase\(ollama_probe_\w+_bucket\{", target["expr"])

    def test_docs_list_every_panel(self, dashboard: dict[str, Any]) -> None:
        """docs/dashboard.md ("what you will see") names every panel and row."""
        text = DASHBOARD_DOC.read_text()
        for panel in dashboard_panels(dashboard):
            assert panel["title"] in text, panel["title"]


class TestVariables:
    def test_label_variables_are_multi_select_with_all(self, dashboard: dict[str, Any]) -> None:
        """job, target, model and probe are multi-select query variables with All = ``.+``."""
        found = variables(dashboard)
        for name in LABEL_VARIABLES:
            var = found[name]
            assert var["type"] == "query"
            assert (var["multi"], var["includeAll"], var["allValue"]) == (True, True, ".+")
            assert var["datasource"] == DATASOURCE
            assert var["refresh"] == 2

    def test_variables_chain_in_order(self, dashboard: dict[str, Any]) -> None:
        """Each variable is label_values of its own label, filtered by the variables before it."""
        for i, name in enumerate(LABEL_VARIABLES):
            query = variable_query(variables(dashboard)[name])
            assert query.startswith("label_values(ollama_probe_runs_total")
            assert query.endswith(f", {name})")
            for earlier in LABEL_VARIABLES[:i]:
                assert f'{earlier}=~"${earlier}"' in query, (name, earlier)
            for later in LABEL_VARIABLES[i:]:
                assert f"${later}" not in query, (name, later)

    def test_every_query_filters_on_every_variable(self, dashboard: dict[str, Any]) -> None:
        """Each query filters on $job, $target and $model, and on $probe where series have it."""
        for panel, target in panel_targets(dashboard):
            expr = target["expr"]
            for name in ("job", "target", "model"):
                assert f'{name}=~"${name}"' in expr, (panel["title"], name)
            per_model_only = all(m.startswith("job_target_model:") for m in recorded_metrics(expr))
            if recorded_metrics(expr) and per_model_only:
                assert "$probe" not in expr, panel["title"]
            else:
                assert 'probe=~"$probe"' in expr, panel["title"]

    def test_variables_name_exported_metrics(
        self, dashboard: dict[str, Any], exposition: str
    ) -> None:
        """The metric every variable query lists labels of is in the real exposition."""
        exported = metric_names(exposition)
        for name in LABEL_VARIABLES:
            assert raw_metrics(variable_query(variables(dashboard)[name])) <= exported


class TestQueries:
    def test_every_metric_exists(self, dashboard: dict[str, Any], exposition: str) -> None:
        """Every exporter metric a panel names is exported; every recorded one is a rule."""
        exported = metric_names(exposition)
        records = {rule["record"] for rule in all_rules() if "record" in rule}
        for panel, target in panel_targets(dashboard):
            expr = target["expr"]
            assert raw_metrics(expr) | recorded_metrics(expr), panel["title"]
            assert raw_metrics(expr) <= exported, (panel["title"], raw_metrics(expr) - exported)
            missing = recorded_metrics(expr) - records
            assert not missing, (panel["title"], missing)

    def test_every_query_parses(self, dashboard: dict[str, Any], tmp_path: Path) -> None:
        """With the variables substituted, promtool accepts every panel query."""
        all_values = dict.fromkeys(LABEL_VARIABLES, ".+")
        rules = [
            {"record": f"dashboard:query_{i}:check", "expr": substitute(target["expr"], all_values)}
            for i, (_, target) in enumerate(panel_targets(dashboard))
        ]
        path = tmp_path / "queries.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        result = promtool("check", "rules", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {len(rules)} rules found" in result.stdout

    def test_substitution_leaves_no_variables(self, dashboard: dict[str, Any]) -> None:
        """After substitution no ``$`` is left in any query (every variable is known)."""
        values = dict.fromkeys(LABEL_VARIABLES, ".+")
        for panel, target in panel_targets(dashboard):
            assert "$" not in substitute(target["expr"], values), panel["title"]


class TestProvisioning:
    def test_datasource_provisioning_example(self) -> None:
        """The data source example provisions one Prometheus data source."""
        (path,) = (PROVISIONING / "datasources").glob("*.yml")
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == 1
        (source,) = doc["datasources"]
        assert source["type"] == "prometheus"
        assert source["url"].startswith("http")

    def test_dashboard_provider_example(self) -> None:
        """The dashboard provider example reads dashboard JSON files from a folder."""
        (path,) = (PROVISIONING / "dashboards").glob("*.yml")
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == 1
        (provider,) = doc["providers"]
        assert provider["type"] == "file"
        assert provider["options"]["path"].startswith("/")
