"""The Grafana dashboard JSON: importable, provisionable, and built on series that exist."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboard.workloads import exported_labels
from tests.support.processes import LOOPBACK, free_port, http_get, running_process
from tests.support.prometheus import (
    REPO_ROOT,
    RULES_FILE,
    all_rules,
    dashboard_panels,
    load_dashboard,
    metric_names,
    panel_targets,
    promtool,
    raw_metrics,
    recorded_metrics,
    substitute,
    wait_for,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
LABEL_VARIABLES = ("job", "target", "model", "probe")
ROWS = ["Overview", "Throughput", "Latency", "Errors", "Cold loads"]
PROVISIONING = REPO_ROOT / "grafana" / "provisioning"
DASHBOARD_DOC = REPO_ROOT / "docs" / "dashboard.md"
THRESHOLD = re.compile(r":\w+:threshold")
"""A label-less threshold constant of the rules (docs/alerting.md): no variable applies."""
DROP_THRESHOLD = ":ollama_probe_throughput_drop_ratio:threshold"
RATIO_STAT = "Tokens/s now vs 7-day median"
WORST_STAT = "Worst job vs its 7-day median"
AGGREGATION = re.compile(r"\b(sum|avg|min|max|count|group|quantile|topk|bottomk)\s*(\(|by|without)")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


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

    def test_every_query_filters_on_every_variable(
        self, dashboard: dict[str, Any], exposition: str
    ) -> None:
        """Each query filters on $job, $target and $model, and on $probe where series have it.

        Per-model series have no ``probe``: the recorded ``job_target_model:`` ones and the
        exported ones without that label (the model inventory), where ``probe=~".+"`` would
        match nothing. Except a query of one threshold constant alone: it has no labels.
        """
        exported = exported_labels(exposition)
        per_model_raw = {name for name, labels in exported.items() if "probe" not in labels}
        assert "ollama_probe_model_loaded" in per_model_raw
        assert "ollama_probe_runs_total" not in per_model_raw
        for panel, target in panel_targets(dashboard):
            expr = target["expr"]
            if THRESHOLD.fullmatch(expr):
                continue
            for name in ("job", "target", "model"):
                assert f'{name}=~"${name}"' in expr, (panel["title"], name)
            recorded, raw = recorded_metrics(expr), raw_metrics(expr)
            per_model_only = raw <= per_model_raw and all(
                m.startswith("job_target_model:") for m in recorded
            )
            if per_model_only:
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


def panel(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    (found,) = [p for p in dashboard_panels(dashboard) if p.get("title") == title]
    return found


def shipped_drop_ratio() -> float:
    """The rules file's OllamaProbeThroughputDrop threshold, from its ``vector(...)``."""
    (rule,) = [r for r in all_rules() if r.get("record") == DROP_THRESHOLD]
    match = re.fullmatch(r"vector\(([0-9.]+)\)", rule["expr"])
    assert match is not None, rule
    return float(match.group(1))


class TestThroughputBaselinePanels:
    def test_ratio_stat_is_per_job(self, dashboard: dict[str, Any]) -> None:
        """The ratio stat divides each job's rate by its own median, with no aggregation."""
        stat = panel(dashboard, RATIO_STAT)
        assert stat["fieldConfig"]["defaults"]["unit"] == "percentunit"
        assert stat["options"]["textMode"] == "value_and_name"
        ratio, threshold = stat["targets"]
        assert not AGGREGATION.search(ratio["expr"]), ratio["expr"]
        assert recorded_metrics(ratio["expr"]) == {
            "job_target_model_probe:ollama_probe_tokens_per_second:mean_rate30m",
            "job_target_model_probe:ollama_probe_tokens_per_second:median7d_mean_rate30m",
        }
        assert all(f"{{{{{label}}}}}" in ratio["legendFormat"] for label in LABEL_VARIABLES[1:])
        assert threshold["expr"] == DROP_THRESHOLD

    def test_ratio_stat_gives_each_job_its_own_ratio(
        self, dashboard: dict[str, Any], tmp_path: Path
    ) -> None:
        """promtool evaluates the stat's query with the shipped rules: one ratio per model.

        Two models: one steady at 100 tokens/s (ratio 1), one falling to 50 after 2 h (0.5
        against its median of 100). An average across them would give 0.75.
        """
        (ratio, _) = panel(dashboard, RATIO_STAT)["targets"]
        labels = 'job="ollama-probe", instance="exporter:10434", target="gpu-1", probe="short"'
        series = {
            "llama3.2:1b": ("0+500x32", "0+5x32"),
            "qwen3:0.6b": ("0+500x24 12250+250x7", "0+5x32"),
        }
        unit = {
            "rule_files": [str(RULES_FILE)],
            "evaluation_interval": "5m",
            "tests": [
                {
                    "interval": "5m",
                    "input_series": [
                        {
                            "series": f'ollama_probe_tokens_per_second_{part}{{{labels}, model="{model}"}}',
                            "values": values,
                        }
                        for model, pair in series.items()
                        for part, values in zip(("sum", "count"), pair, strict=True)
                    ],
                    "promql_expr_test": [
                        {
                            "expr": substitute(ratio["expr"], dict.fromkeys(LABEL_VARIABLES, ".+")),
                            "eval_time": "2h40m",
                            "exp_samples": [
                                {
                                    "labels": f'{{job="ollama-probe", target="gpu-1", model="{model}", probe="short"}}',
                                    "value": value,
                                }
                                for model, value in (("llama3.2:1b", 1), ("qwen3:0.6b", 0.5))
                            ],
                        }
                    ],
                }
            ],
        }
        path = tmp_path / "ratio_stat_test.yml"
        path.write_text(yaml.safe_dump(unit))
        result = promtool("test", "rules", str(path))
        assert result.returncode == 0, result.stdout + result.stderr

    @pytest.mark.parametrize("title", [RATIO_STAT, WORST_STAT])
    def test_red_step_is_the_shipped_threshold(self, dashboard: dict[str, Any], title: str) -> None:
        """The fixed colours turn red below the rules file's default drop threshold."""
        steps = panel(dashboard, title)["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[0]["color"] == "red"
        assert steps[1]["value"] == shipped_drop_ratio()

    def test_descriptions_name_the_threshold_they_quote(self, dashboard: dict[str, Any]) -> None:
        """A panel that explains OllamaProbeThroughputDrop names its threshold constants.

        So a reader of a tuned setup knows where the number in force is, not only the default.
        """
        quoting = [
            p
            for p in dashboard_panels(dashboard)
            if "OllamaProbeThroughputDrop" in p.get("description", "")
        ]
        assert {p["title"] for p in quoting} >= {RATIO_STAT, WORST_STAT}
        for found in quoting:
            description = found["description"]
            assert DROP_THRESHOLD in description, found["title"]
            assert ":ollama_probe_throughput_baseline_history_seconds:threshold" in description


INVENTORY = "Model inventory"
INVENTORY_COLUMNS = {
    "Loaded": "ollama_probe_model_loaded",
    "VRAM": "ollama_probe_model_vram_bytes",
    "Size": "ollama_probe_model_size_bytes",
    "In VRAM": "job_target_model:ollama_probe_model_vram_bytes_per_size_bytes:ratio",
    "Partial offload": "ollama_probe_model_partial_offload",
}
"""The inventory table's columns and the one series each column's query reads."""
SKIPPED = "Skipped runs by reason"
SKIPPED_METRIC = "ollama_probe_skipped_total"


def beside(left: dict[str, Any], right: dict[str, Any]) -> bool:
    """True if ``right`` sits directly to the right of ``left``, on the same line."""
    a, b = left["gridPos"], right["gridPos"]
    return (a["y"], a["x"] + a["w"]) == (b["y"], b["x"])


def overrides(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Field name → {property id: value} of a panel's by-name overrides."""
    return {
        o["matcher"]["options"]: {prop["id"]: prop["value"] for prop in o["properties"]}
        for o in found["fieldConfig"]["overrides"]
        if o["matcher"]["id"] == "byName"
    }


class TestWorkloadPanels:
    def test_inventory_and_vram_share_sit_beside_the_throughput(
        self, dashboard: dict[str, Any]
    ) -> None:
        """The model inventory is beside Client tokens/s, the VRAM share beside Server tokens/s."""
        assert beside(panel(dashboard, "Client tokens/s"), panel(dashboard, INVENTORY))
        assert beside(panel(dashboard, "Server tokens/s"), panel(dashboard, "Model share in VRAM"))

    def test_inventory_columns_are_named_after_their_queries(
        self, dashboard: dict[str, Any]
    ) -> None:
        """Each column of the inventory is the value of the query that reads its series."""
        table = panel(dashboard, INVENTORY)
        (organize,) = [t for t in table["transformations"] if t["id"] == "organize"]
        renames = organize["options"]["renameByName"]
        columns = {}
        for target in table["targets"]:
            assert (target["instant"], target["format"]) == (True, "table"), target["refId"]
            column = renames[f"Value #{target['refId']}"]
            columns[column] = raw_metrics(target["expr"]) | recorded_metrics(target["expr"])
        assert columns == {name: {series} for name, series in INVENTORY_COLUMNS.items()}

    def test_inventory_highlights_partial_offload(self, dashboard: dict[str, Any]) -> None:
        """Partial offload shows as a red cell; sizes in bytes, the VRAM share in percent."""
        table = panel(dashboard, INVENTORY)
        props = overrides(table)
        offload = props["Partial offload"]
        assert offload["custom.cellOptions"]["type"] == "color-background"
        (mapping,) = offload["mappings"]
        assert mapping["options"]["1"]["color"] == "red"
        assert mapping["options"]["0"]["color"] == "transparent"
        assert table["fieldConfig"]["defaults"]["unit"] == "bytes"
        assert props["In VRAM"]["unit"] == "percentunit"
        assert props["Loaded"]["unit"] == "none"
        assert "throughput drop" in table["description"]

    def test_first_answer_token_sits_beside_ttft(self, dashboard: dict[str, Any]) -> None:
        """The first-answer-token quantiles are beside TTFT's, in the same unit."""
        ttft = panel(dashboard, "TTFT p50 and p95")
        answer = panel(dashboard, "Time to first answer token p50 and p95")
        assert beside(ttft, answer)
        assert answer["fieldConfig"]["defaults"]["unit"] == ttft["fieldConfig"]["defaults"]["unit"]
        assert {m for t in answer["targets"] for m in recorded_metrics(t["expr"])} == {
            "job_target_model_probe:ollama_probe_time_to_first_content_token_seconds:p50_rate30m",
            "job_target_model_probe:ollama_probe_time_to_first_content_token_seconds:p95_rate30m",
        }

    def test_skipped_runs_are_counted_by_reason_and_not_called_errors(
        self, dashboard: dict[str, Any]
    ) -> None:
        """The skipped stat sums the skip counter by reason over the range; it says skips are
        deliberate and not errors, and shows 0 (not "No data") where no job can skip."""
        stat = panel(dashboard, SKIPPED)
        (target,) = stat["targets"]
        assert raw_metrics(target["expr"]) == {SKIPPED_METRIC}
        assert re.match(r"sum by \([^)]*\breason\b[^)]*\) \(increase\(", target["expr"])
        assert target["expr"].endswith("[$__range]))")
        assert "deliberate" in stat["description"]
        assert "not errors" in stat["description"]
        assert stat["fieldConfig"]["defaults"]["noValue"] == "0"
        errors_row = panel(dashboard, "Errors")["gridPos"]["y"]
        assert stat["gridPos"]["y"] == errors_row + 1


@pytest.fixture(scope="module")
def demo_exposition(dashboard: dict[str, Any]) -> Iterator[str]:
    """``ollama-probe-exporter demo``'s /metrics once it has every series the dashboard reads
    (but the skip counter) and has found its CPU model."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    argv = [sys.executable, "-m", "exporter", "demo", "--web.listen-address", f"{LOOPBACK}:{port}"]
    wanted = {m for _, t in panel_targets(dashboard) for m in raw_metrics(t["expr"])}
    wanted.discard(SKIPPED_METRIC)
    missing: set[str] = set()

    def ready() -> str | None:
        status, text = http_get(f"{url}/metrics")
        assert status == 200, text
        missing.clear()
        missing.update(wanted - metric_names(text))
        cpu = re.search(DEMO_CPU_OFFLOAD, text, re.MULTILINE)
        return text if not missing and cpu else None

    with running_process(argv, f"{url}/-/healthy"):
        what = "the demo to export every series the dashboard reads"
        yield wait_for(ready, 60, what, detail=lambda: f"missing: {sorted(missing)}")


DEMO_CPU_OFFLOAD = r'^ollama_probe_model_partial_offload\{[^}]*model="tinyllama:cpu"[^}]*\} 1\.0$'
"""The demo's CPU-only model, reported as partially offloaded (wholly on the CPU)."""


class TestDemo:
    def test_every_panel_but_skips_has_series_in_the_demo(
        self, dashboard: dict[str, Any], demo_exposition: str
    ) -> None:
        """``make demo`` fills every panel, but the skipped stat (which then shows 0).

        The skip counter exists only for ``when: if_loaded`` jobs, and the demo has none (it
        never has a model that is not loaded). The end-to-end test runs one.
        """
        exported = metric_names(demo_exposition)
        for found, target in panel_targets(dashboard):
            absent = raw_metrics(target["expr"]) - exported
            if found["title"] == SKIPPED:
                assert absent == {SKIPPED_METRIC}
            else:
                assert not absent, (found["title"], absent)

    def test_the_demo_shows_a_partial_offload(self, demo_exposition: str) -> None:
        """Its CPU-only model is partially offloaded with nothing in VRAM: the red cell."""
        assert re.search(DEMO_CPU_OFFLOAD, demo_exposition, re.MULTILINE)
        vram = r'^ollama_probe_model_vram_bytes\{[^}]*model="tinyllama:cpu"[^}]*\} 0\.0$'
        assert re.search(vram, demo_exposition, re.MULTILINE)


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
