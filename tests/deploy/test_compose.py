"""The compose stack: file schema, mounts, Prometheus/Alertmanager configs, Grafana, the demo."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.support import DEFAULT_PORT, REPO_ROOT, config_check, load_yaml
from tests.support.processes import exporter_process, http_get, simulator_process
from tests.support.tools import run_tool

COMPOSE_DIR = REPO_ROOT / "deploy" / "compose"
COMPOSE_FILES = ["compose.yml", "compose.simulator.yml", "compose.gpu.yml"]
DASHBOARD = REPO_ROOT / "grafana" / "ollama-probe-exporter.json"
RULES = REPO_ROOT / "deploy" / "prometheus" / "ollama-probe-exporter.rules.yml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return load_yaml(COMPOSE_DIR / "compose.yml")["services"]


@pytest.fixture(scope="module")
def simulator_services() -> dict[str, Any]:
    return load_yaml(COMPOSE_DIR / "compose.simulator.yml")["services"]


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path → host path for the service's relative bind mounts (not named volumes)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[target] = (COMPOSE_DIR / source).resolve()
    return mounts


class TestComposeFiles:
    @pytest.mark.parametrize("name", COMPOSE_FILES)
    def test_file_matches_the_compose_specification(self, name: str) -> None:
        """Each compose file validates against the Compose Specification JSON schema."""
        result = run_tool(
            "check-jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE_DIR / name),
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def test_stack_has_the_five_services(self, services: dict[str, Any]) -> None:
        """Ollama, the exporter, Prometheus, Alertmanager and Grafana are all in compose.yml."""
        assert {"ollama", "exporter", "prometheus", "alertmanager", "grafana"} <= set(services)

    @pytest.mark.parametrize("name", COMPOSE_FILES)
    def test_bind_mount_sources_and_build_contexts_exist(self, name: str) -> None:
        """Every relative bind-mount source and build context exists in the repository."""
        missing = []
        for service in load_yaml(COMPOSE_DIR / name)["services"].values():
            missing += [str(p) for p in bind_mounts(service).values() if not p.exists()]
            if "build" in service:
                context = (COMPOSE_DIR / service["build"]["context"]).resolve()
                if not (context / service["build"]["dockerfile"]).is_file():
                    missing.append(str(context / service["build"]["dockerfile"]))
        assert missing == []

    def test_published_ports_are_loopback_only(self, services: dict[str, Any]) -> None:
        """Published ports bind 127.0.0.1, so Grafana's default password never faces a network."""
        ports = [p for s in services.values() for p in s.get("ports", [])]
        assert ports
        assert [p for p in ports if not p.startswith("127.0.0.1:")] == []


class TestPrometheus:
    def test_config_and_mounted_rules_pass_promtool(
        self, services: dict[str, Any], tmp_path: Path
    ) -> None:
        """prometheus.yml, staged as the container sees it, passes promtool with the rules."""
        etc = PurePosixPath("/etc/prometheus")
        for target, source in bind_mounts(services["prometheus"]).items():
            staged = tmp_path / PurePosixPath(target).relative_to(etc)
            staged.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, staged)
        result = run_tool("promtool", "check", "config", str(tmp_path / "prometheus.yml"))
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert re.search(
            r"ollama-probe-exporter\.rules\.yml\n\s+SUCCESS: [1-9]\d* rules found", output
        )

    def test_rules_pass_promtool_check_rules(self) -> None:
        """The rules file the stack loads passes promtool check rules with linting fatal."""
        result = run_tool("promtool", "check", "rules", "--lint=all", "--lint-fatal", str(RULES))
        assert result.returncode == 0, result.stdout + result.stderr

    def test_prometheus_loads_the_shipped_rules_file(self, services: dict[str, Any]) -> None:
        """The rules mounted into Prometheus are deploy/prometheus's shipped file."""
        assert RULES in bind_mounts(services["prometheus"]).values()

    def test_scrape_and_alerting_targets_are_stack_services(self, services: dict[str, Any]) -> None:
        """Prometheus scrapes exporter:<default port> and alerts to alertmanager:9093."""
        config = load_yaml(COMPOSE_DIR / "prometheus" / "prometheus.yml")
        jobs = {j["job_name"]: j for j in config["scrape_configs"]}
        targets = [t for sc in jobs["ollama-probe"]["static_configs"] for t in sc["targets"]]
        alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
        exporter_ports = services["exporter"]["ports"]
        assert targets == [f"exporter:{DEFAULT_PORT}"]
        assert exporter_ports == [f"127.0.0.1:{DEFAULT_PORT}:{DEFAULT_PORT}"]
        assert alertmanagers == ["alertmanager:9093"]
        assert (
            "--config.file=/etc/alertmanager/alertmanager.yml"
            in services["alertmanager"]["command"]
        )


def test_alertmanager_config_passes_amtool(services: dict[str, Any]) -> None:
    """alertmanager.yml, as mounted into Alertmanager, passes amtool check-config."""
    source = bind_mounts(services["alertmanager"])["/etc/alertmanager/alertmanager.yml"]
    result = run_tool("amtool", "check-config", str(source))
    assert result.returncode == 0, result.stdout + result.stderr


class TestGrafana:
    def test_provisioned_dashboard_is_the_one_in_grafana_dir(
        self, services: dict[str, Any]
    ) -> None:
        """The dashboard provider's folder holds exactly grafana/ollama-probe-exporter.json."""
        mounts = bind_mounts(services["grafana"])
        provisioning = mounts["/etc/grafana/provisioning"]
        providers = load_yaml(provisioning / "dashboards" / "ollama-probe-exporter.yml")[
            "providers"
        ]
        folder = PurePosixPath(providers[0]["options"]["path"])
        in_folder = {t: s for t, s in mounts.items() if PurePosixPath(t).parent == folder}
        home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        assert list(in_folder.values()) == [DASHBOARD]
        assert home in in_folder
        assert DASHBOARD.is_file()

    def test_datasource_points_at_the_stack_prometheus(self, services: dict[str, Any]) -> None:
        """The provisioned default data source is the compose Prometheus service."""
        provisioning = bind_mounts(services["grafana"])["/etc/grafana/provisioning"]
        sources = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
        url = urlsplit(sources[0]["url"])
        assert (sources[0]["type"], sources[0]["isDefault"]) == ("prometheus", True)
        assert (url.hostname, url.port) == ("prometheus", 9090)
        assert "prometheus" in services


class TestExporter:
    def test_exporter_config_passes_config_check(self, services: dict[str, Any]) -> None:
        """The mounted exporter config is the one --config.file names, and it passes the check."""
        command = services["exporter"]["command"]
        config_path = command[command.index("--config.file") + 1]
        result = config_check(bind_mounts(services["exporter"])[config_path])
        assert (result.returncode, result.stderr) == (0, "")
        assert "warning" not in result.stdout

    def test_exporter_targets_the_ollama_service_and_its_pulled_model(
        self, services: dict[str, Any]
    ) -> None:
        """The exporter probes ollama:11434 and the model the pull job downloads."""
        config = load_yaml(COMPOSE_DIR / "exporter" / "config.yml")
        url = urlsplit(config["targets"][0]["url"])
        assert (url.hostname, url.port) == ("ollama", 11434)
        assert config["targets"][0]["models"] == [services["ollama-pull"]["command"][-1]]

    def test_simulator_override_replaces_ollama_on_the_same_port(
        self, services: dict[str, Any], simulator_services: dict[str, Any]
    ) -> None:
        """compose.simulator.yml runs the exporter image's simulator as `ollama` on port 11434."""
        simulator = simulator_services["ollama"]
        command = simulator["command"]
        assert simulator["image"] == services["exporter"]["image"]
        assert simulator["build"] == services["exporter"]["build"]
        assert command[:2] == ["simulator", "--web.listen-address"]
        assert command[2] == ":11434"
        assert "http://127.0.0.1:11434/api/version" in " ".join(simulator["healthcheck"]["test"])
        assert simulator_services["ollama-pull"]["profiles"] == ["real-ollama"]


def test_simulator_demo_probes_succeed(tmp_path: Path) -> None:
    """The compose exporter config, pointed at a real simulator, gives successful probes."""
    config = load_yaml(COMPOSE_DIR / "exporter" / "config.yml")
    with simulator_process() as simulator:
        config["targets"][0]["url"] = simulator.url
        config_file = tmp_path / "config.yml"
        config_file.write_text(yaml.safe_dump(config))
        with exporter_process(config_file) as exporter:
            expected = re.compile(
                r'^ollama_probe_success\{[^}]*model="llama3\.2:1b"[^}]*\} 1\.0$', re.MULTILINE
            )
            deadline = time.monotonic() + 20
            body = ""
            while time.monotonic() < deadline and not expected.search(body):
                body = http_get(exporter.url + "/metrics")[1]
                time.sleep(0.2)
            assert expected.search(body), body
