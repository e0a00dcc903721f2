"""The Helm chart, rendered offline by Helm's own engine and checked object by object."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.deploy.support import DEFAULT_PORT, REPO_ROOT, config_check, find
from tools.manifests import (
    DASHBOARD_FILE,
    OPERATOR_VALUES,
    RULES_FILE,
    Rendered,
    chart_archive,
    render,
    render_raw,
)

CONFIG_PATH = "/etc/ollama-probe-exporter/config.yml"
SELECTOR = {
    "app.kubernetes.io/name": "ollama-probe-exporter",
    "app.kubernetes.io/instance": "ollama-probe-exporter",
}
# Every optional object switched on, with a header token from a chart-made Secret.
FULL_VALUES: dict[str, Any] = {
    **OPERATOR_VALUES,
    "secretEnv": {"OLLAMA_PROXY_TOKEN": "Bearer not-a-real-token"},
    "existingSecret": "my-ollama-tokens",
    "config": {
        "targets": [
            {
                "name": "gpu-box-1",
                "url": "http://ollama.ollama.svc:11434",
                "models": ["llama3.2:1b"],
                "headers": {"Authorization": {"env": "OLLAMA_PROXY_TOKEN"}},
            }
        ],
        "probes": [{"name": "short", "prompt": "Hi", "interval": "60s", "timeout": "30s"}],
    },
}
# The oldest version the chart supports (Chart.yaml kubeVersion) and the newest schema shipped.
KUBERNETES_VERSIONS = ["1.25.0", kubernetes_validate.utils.latest_version()]
CORE_KINDS = {
    "ServiceAccount": "v1",
    "Secret": "v1",
    "ConfigMap": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
}
OPERATOR_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
}


@pytest.fixture(scope="module")
def default_docs() -> list[Rendered]:
    return render()


@pytest.fixture(scope="module")
def full_docs() -> list[Rendered]:
    return render(FULL_VALUES)


def container(docs: list[Rendered]) -> dict[str, Any]:
    """The exporter container of the Deployment."""
    containers = find(docs, "Deployment").obj["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def rendered_config(docs: list[Rendered], tmp_path: Path) -> Path:
    """Write the ConfigMap's config.yml to a file, as the pod would see it."""
    configmaps = [d for d in docs if d.kind == "ConfigMap" and "config.yml" in d.obj["data"]]
    assert len(configmaps) == 1
    path = tmp_path / "config.yml"
    path.write_text(configmaps[0].obj["data"]["config.yml"])
    return path


@pytest.fixture(scope="module")
def chart_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart as ``helm package`` would ship it, with files/ fresh from their sources."""
    path = tmp_path_factory.mktemp("chart") / "ollama-probe-exporter.tgz"
    path.write_bytes(chart_archive())
    return path


class TestLint:
    @pytest.mark.parametrize("values", [{}, FULL_VALUES], ids=["default", "everything-on"])
    def test_helm_lint_strict_reports_no_warning(
        self, values: dict[str, Any], chart_package: Path
    ) -> None:
        """`helm lint --strict` finds no warning or error, with defaults and everything on."""
        report = helm.lint(chart_package, values, strict=True, kube_version="v1.25.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert (report["errors"], problems) == ([], [])


class TestObjects:
    def test_default_render_has_exactly_the_core_objects(
        self, default_docs: list[Rendered]
    ) -> None:
        """Defaults render a ServiceAccount, ConfigMaps, Service and Deployment, nothing else."""
        kinds = sorted((d.kind, d.obj["apiVersion"]) for d in default_docs)
        assert kinds == [
            ("ConfigMap", "v1"),
            ("ConfigMap", "v1"),
            ("Deployment", "apps/v1"),
            ("Service", "v1"),
            ("ServiceAccount", "v1"),
        ]

    def test_full_render_adds_secret_and_operator_objects(self, full_docs: list[Rendered]) -> None:
        """With everything on, each kind has its expected apiVersion."""
        expected = CORE_KINDS | OPERATOR_KINDS
        assert {d.kind: d.obj["apiVersion"] for d in full_docs} == expected

    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    @pytest.mark.parametrize("values", [{}, FULL_VALUES], ids=["default", "everything-on"])
    def test_core_objects_match_the_kubernetes_schema_strictly(
        self, values: dict[str, Any], version: str
    ) -> None:
        """Every core object validates against the Kubernetes OpenAPI schema, no unknown field."""
        errors = []
        for doc in render(values):
            if doc.kind in OPERATOR_KINDS:
                continue
            try:
                kubernetes_validate.validate(doc.obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                errors.append(f"{doc.kind}/{doc.name}: {err.message}")
        assert errors == []

    def test_every_object_carries_the_selector_labels(self, full_docs: list[Rendered]) -> None:
        """Every object is labelled with the chart's name and instance labels."""
        missing = [
            d.kind for d in full_docs if not SELECTOR.items() <= d.obj["metadata"]["labels"].items()
        ]
        assert missing == []


class TestSelectorsAndPorts:
    def test_service_and_deployment_select_the_pods(self, default_docs: list[Rendered]) -> None:
        """The Deployment and Service selectors equal each other and match the pod labels."""
        deployment = find(default_docs, "Deployment").obj
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        service_selector = find(default_docs, "Service").obj["spec"]["selector"]
        assert deployment["spec"]["selector"]["matchLabels"] == SELECTOR
        assert service_selector == SELECTOR
        assert SELECTOR.items() <= pod_labels.items()

    def test_service_monitor_selects_the_service_port(self, full_docs: list[Rendered]) -> None:
        """The ServiceMonitor selects the Service by its labels and scrapes its named port."""
        monitor = find(full_docs, "ServiceMonitor").obj["spec"]
        service = find(full_docs, "Service").obj
        assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        port_names = {p["name"] for p in service["spec"]["ports"]}
        assert [(e["port"], e["path"]) for e in monitor["endpoints"]] == [("metrics", "/metrics")]
        assert "metrics" in port_names

    def test_ports_agree_with_the_exporter_default(self, default_docs: list[Rendered]) -> None:
        """Container port, listen flag and Service port all use the exporter's default port."""
        exporter = container(default_docs)
        args = exporter["args"]
        listen = args[args.index("--web.listen-address") + 1]
        service_ports = find(default_docs, "Service").obj["spec"]["ports"]
        assert exporter["ports"] == [
            {"name": "metrics", "containerPort": DEFAULT_PORT, "protocol": "TCP"}
        ]
        assert listen == f":{DEFAULT_PORT}"
        assert [(p["name"], p["port"], p["targetPort"]) for p in service_ports] == [
            ("metrics", DEFAULT_PORT, "metrics")
        ]

    def test_probes_hit_the_health_endpoint(self, default_docs: list[Rendered]) -> None:
        """Liveness and readiness probes GET /-/healthy on the metrics port."""
        exporter = container(default_docs)
        for probe in ("livenessProbe", "readinessProbe"):
            assert exporter[probe]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}


class TestPodHardening:
    def test_security_contexts(self, default_docs: list[Rendered]) -> None:
        """Non-root, read-only root fs, no privilege escalation, no capabilities, seccomp."""
        pod = find(default_docs, "Deployment").obj["spec"]["template"]["spec"]
        ctx = container(default_docs)["securityContext"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert ctx["runAsNonRoot"] is True
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}

    def test_pod_user_is_the_image_user(self, default_docs: list[Rendered]) -> None:
        """The pod runs as the numeric user the Dockerfile creates."""
        pod = find(default_docs, "Deployment").obj["spec"]["template"]["spec"]
        dockerfile = (REPO_ROOT / "Dockerfile").read_text()
        uid, gid = pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
        assert f"\nUSER {uid}:{gid}\n" in dockerfile

    def test_resources_have_requests_and_a_memory_limit(self, default_docs: list[Rendered]) -> None:
        """CPU and memory are requested and memory is limited."""
        resources = container(default_docs)["resources"]
        assert set(resources["requests"]) == {"cpu", "memory"}
        assert "memory" in resources["limits"]


class TestConfig:
    def test_configmap_config_passes_config_check(
        self, default_docs: list[Rendered], tmp_path: Path
    ) -> None:
        """The default values render a config that the exporter accepts without warnings."""
        result = config_check(rendered_config(default_docs, tmp_path))
        assert (result.returncode, result.stderr) == (0, "")
        assert "warning" not in result.stdout

    def test_config_is_mounted_where_the_flag_points(self, default_docs: list[Rendered]) -> None:
        """The ConfigMap key is mounted at the path that --config.file names."""
        exporter = container(default_docs)
        args = exporter["args"]
        mount = next(m for m in exporter["volumeMounts"] if m["name"] == "config")
        volumes = find(default_docs, "Deployment").obj["spec"]["template"]["spec"]["volumes"]
        config_volume = next(v for v in volumes if v["name"] == "config")
        assert args[args.index("--config.file") + 1] == CONFIG_PATH
        assert (mount["mountPath"], mount["subPath"], mount["readOnly"]) == (
            CONFIG_PATH,
            "config.yml",
            True,
        )
        assert config_volume["configMap"]["name"] == find(default_docs, "Deployment").name

    def test_secret_env_reaches_a_header_env_value(
        self, full_docs: list[Rendered], tmp_path: Path
    ) -> None:
        """A chart-made Secret becomes env vars, and a header reading one passes the check."""
        secret = find(full_docs, "Secret")
        env_from = container(full_docs)["envFrom"]
        token_env = {k: base64.b64decode(v).decode() for k, v in secret.obj["data"].items()}
        assert env_from == [
            {"secretRef": {"name": secret.name}},
            {"secretRef": {"name": "my-ollama-tokens"}},
        ]
        assert token_env == {"OLLAMA_PROXY_TOKEN": "Bearer not-a-real-token"}
        result = config_check(rendered_config(full_docs, tmp_path), env=token_env)
        assert (result.returncode, result.stderr) == (0, "")
        assert "Bearer not-a-real-token" not in result.stdout

    def test_no_secret_is_created_by_default(self, default_docs: list[Rendered]) -> None:
        """Without secretEnv or existingSecret there is no Secret and no envFrom."""
        assert [d for d in default_docs if d.kind == "Secret"] == []
        assert "envFrom" not in container(default_docs)

    def test_checksum_annotation_is_the_rendered_configmap_hash(self) -> None:
        """checksum/config is the rendered ConfigMap's sha256, so a config change rolls pods."""
        raw = render_raw()
        configmap_text = raw["ollama-probe-exporter/templates/configmap.yaml"]
        deployment = yaml.safe_load(raw["ollama-probe-exporter/templates/deployment.yaml"])
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        other = render({"config": {**FULL_VALUES["config"], "targets": []}})
        other_annotations = find(other, "Deployment").obj["spec"]["template"]["metadata"][
            "annotations"
        ]
        assert annotations["checksum/config"] == hashlib.sha256(configmap_text.encode()).hexdigest()
        assert other_annotations["checksum/config"] != annotations["checksum/config"]


class TestOperatorAndDashboard:
    def test_operator_objects_are_off_by_default(self, default_docs: list[Rendered]) -> None:
        """No ServiceMonitor or PrometheusRule unless enabled (their CRDs may be absent)."""
        assert {d.kind for d in default_docs} & set(OPERATOR_KINDS) == set()

    def test_prometheus_rule_is_the_shipped_rules_file(self, full_docs: list[Rendered]) -> None:
        """With no tuning value set, the PrometheusRule spec is exactly the shipped rules file."""
        spec = find(full_docs, "PrometheusRule").obj["spec"]
        assert spec == yaml.safe_load(RULES_FILE.read_text())

    def test_dashboard_configmap_carries_the_grafana_dashboard(
        self, default_docs: list[Rendered]
    ) -> None:
        """The dashboard ConfigMap has the sidecar label and the JSON from grafana/."""
        dashboard = find(
            [d for d in default_docs if d.name.endswith("-dashboard")], "ConfigMap"
        ).obj
        shipped = json.loads(DASHBOARD_FILE.read_text())
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(dashboard["data"]["ollama-probe-exporter.json"]) == shipped

    def test_dashboard_configmap_can_be_switched_off(self) -> None:
        """dashboards.enabled=false leaves only the config ConfigMap."""
        docs = render({"dashboards": {"enabled": False}})
        assert [d.name for d in docs if d.kind == "ConfigMap"] == ["ollama-probe-exporter"]
