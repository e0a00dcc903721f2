"""docs/deploy.md: its commands name files and paths that the deploy files really use."""

from __future__ import annotations

import re

from tests.deploy.support import DEFAULT_PORT, REPO_ROOT
from tools.manifests import RELEASE

DOC = (REPO_ROOT / "docs" / "deploy.md").read_text()
REPO_PATH = re.compile(r"(?<![\w/.$-])((?:deploy|config|grafana|docs|tests)/[\w./-]*[\w/])")


def test_all_four_ways_have_a_section() -> None:
    """The guide has a section for the image, compose, Kubernetes and systemd."""
    headings = re.findall(r"^## (.+)$", DOC, re.MULTILINE)
    assert headings[:4] == ["Container image", "Compose stack", "Kubernetes", "systemd"]


def test_every_repository_path_in_the_guide_exists() -> None:
    """Each repository path the guide mentions exists, so no command points at a missing file."""
    paths = set(REPO_PATH.findall(DOC))
    assert len(paths) > 10
    assert sorted(p for p in paths if not (REPO_ROOT / p).exists()) == []


def test_commands_use_the_paths_the_deploy_files_use() -> None:
    """Install commands target the unit's paths, the chart's release name and the default port."""
    unit = (REPO_ROOT / "deploy" / "systemd" / "ollama-probe-exporter.service").read_text()
    for path in ("/usr/local/bin/ollama-probe-exporter", "/etc/default/ollama-probe-exporter"):
        assert path in unit
        assert path in DOC
    assert f"helm upgrade --install {RELEASE} deploy/helm/ollama-probe-exporter" in DOC
    assert f"curl -s http://127.0.0.1:{DEFAULT_PORT}/-/healthy" in DOC
    for compose_file in ("compose.simulator.yml", "compose.gpu.yml"):
        assert f"-f compose.yml -f {compose_file} up -d --build" in DOC
