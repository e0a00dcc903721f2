"""The plain manifests in deploy/kubernetes/ are the chart's rendering, kept in sync."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.chart import MANIFEST_DIR, MANIFESTS, main, manifest_text


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifest_is_the_current_chart_rendering(name: str) -> None:
    """Each file equals a fresh render (regenerate with `python -m tests.deploy.chart --write`)."""
    assert (MANIFEST_DIR / name).read_text() == manifest_text(name)


def test_no_stray_files_in_the_manifest_folder() -> None:
    """deploy/kubernetes/ holds only generated manifests, so none can go stale unnoticed."""
    assert sorted(p.name for p in MANIFEST_DIR.iterdir()) == sorted(MANIFESTS)


def test_check_mode_reports_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--check` exits 1 and names the file when a manifest differs from the chart."""
    for name in MANIFESTS:
        (tmp_path / name).write_text(manifest_text(name))
    (tmp_path / "prometheus-operator.yaml").write_text("# edited by hand\n")
    monkeypatch.setattr("tests.deploy.chart.MANIFEST_DIR", tmp_path)
    assert main([]) == 1
    assert "prometheus-operator.yaml is out of date" in capsys.readouterr().out


def test_default_manifest_objects_validate_strictly() -> None:
    """Every object in the default manifest passes the newest Kubernetes schema, strictly."""
    docs = [
        d
        for d in yaml.safe_load_all((MANIFEST_DIR / "ollama-probe-exporter.yaml").read_text())
        if d
    ]
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(
                doc, kubernetes_validate.utils.latest_version(), strict=True
            )
        except kubernetes_validate.ValidationError as err:
            errors.append(f"{doc['kind']}: {err.message}")
    assert (len(docs), errors) == (5, [])
