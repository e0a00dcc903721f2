"""The systemd unit and its environment file, checked by systemd-analyze and the real daemon."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.support import DEFAULT_PORT, REPO_ROOT, config_check
from tests.support.processes import exporter_process, free_port, http_get
from tests.support.tools import run_tool

SYSTEMD_DIR = REPO_ROOT / "deploy" / "systemd"
UNIT = SYSTEMD_DIR / "ollama-probe-exporter.service"
ENV_FILE = SYSTEMD_DIR / "ollama-probe-exporter.env"
INSTALLED_BINARY = "/usr/local/bin/ollama-probe-exporter"
EXAMPLE_CONFIG = REPO_ROOT / "deploy" / "docker" / "config.yml"


def directives(section: str) -> dict[str, list[str]]:
    """The unit's directives in ``section``, each name with all its values in order."""
    result: dict[str, list[str]] = {}
    current = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section:
            key, _, value = line.partition("=")
            result.setdefault(key, []).append(value)
    return result


def env_file_values() -> dict[str, str]:
    """KEY=VALUE assignments of the env file, quotes removed as systemd does."""
    values = {}
    for raw in ENV_FILE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=VALUE: {line!r}"
            (values[key],) = shlex.split(value)
    return values


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return run_tool("systemd-analyze", *args, timeout=60)


@pytest.fixture
def verifiable_unit(tmp_path: Path) -> Path:
    """A copy of the unit whose ExecStart binary exists here.

    systemd-analyze verify fails when the ExecStart binary is missing, and the documented
    /usr/local/bin/ollama-probe-exporter exists only after the install steps. The copy points
    ExecStart at this venv's console script; nothing else in the unit changes.
    """
    script = Path(sys.executable).parent / "ollama-probe-exporter"
    assert script.is_file(), "the console script is installed by `pip install -e .`"
    text = UNIT.read_text()
    assert text.count(f"ExecStart={INSTALLED_BINARY} ") == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={script} "))
    return copy


def test_unit_passes_systemd_analyze_verify(verifiable_unit: Path) -> None:
    """systemd-analyze verify accepts the unit without a single warning (unknown keys warn)."""
    result = analyze("verify", str(verifiable_unit))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_unit_hardening_scores_at_most_2_of_10(verifiable_unit: Path) -> None:
    """systemd-analyze security rates the unit's exposure 2.0 or lower (10 is unprotected)."""
    result = analyze("security", "--offline=yes", "--threshold=20", str(verifiable_unit))
    assert result.returncode == 0, result.stdout[-500:] + result.stderr


def test_unit_has_the_required_hardening_and_reload() -> None:
    """DynamicUser, ProtectSystem=strict, NoNewPrivileges, and ExecReload sending SIGHUP."""
    service = directives("Service")
    assert service["DynamicUser"] == ["yes"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert directives("Install")["WantedBy"] == ["multi-user.target"]


def test_exec_start_uses_the_documented_paths() -> None:
    """ExecStart runs the installed script with the documented config path, plus $ARGS."""
    service = directives("Service")
    assert service["ExecStart"] == [
        f"{INSTALLED_BINARY} --config.file /etc/ollama-probe-exporter/config.yml $ARGS"
    ]
    assert service["EnvironmentFile"] == ["-/etc/default/ollama-probe-exporter"]


def test_env_file_args_and_variables_pass_config_check() -> None:
    """The env file's ARGS and variables are accepted by the real exporter's config check."""
    values = env_file_values()
    args = values.pop("ARGS").split()
    assert args[args.index("--web.listen-address") + 1] == f":{DEFAULT_PORT}"
    assert [k for k in values if k.upper().startswith("OLLAMA_PROBE_")] == []
    result = config_check(
        EXAMPLE_CONFIG, env=values, executable=[sys.executable, "-m", "exporter", *args]
    )
    assert (result.returncode, result.stderr) == (0, "")


def reload_timestamp(url: str) -> float:
    """The exporter's last successful config load time, from its /metrics."""
    name = "ollama_probe_exporter_config_last_reload_success_timestamp_seconds"
    for line in http_get(url + "/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_sighup_reloads_and_keeps_serving(tmp_path: Path) -> None:
    """The daemon survives SIGHUP (ExecReload) and records a new successful reload."""
    config = tmp_path / "config.yml"
    # A loopback port nobody listens on: probes fail fast and nothing leaves the machine.
    unused = f"http://127.0.0.1:{free_port()}"
    config.write_text(EXAMPLE_CONFIG.read_text().replace("http://ollama:11434", unused))
    with exporter_process(config) as exporter:
        first = reload_timestamp(exporter.url)
        time.sleep(0.05)  # the reload's timestamp must differ from the start-up load's
        exporter.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and reload_timestamp(exporter.url) == first:
            time.sleep(0.05)
        body = http_get(exporter.url + "/metrics")[1]
        assert reload_timestamp(exporter.url) > first
        assert exporter.proc.poll() is None
        assert http_get(exporter.url + "/-/healthy")[0] == 200
        assert "ollama_probe_exporter_config_last_reload_successful 1.0" in body
