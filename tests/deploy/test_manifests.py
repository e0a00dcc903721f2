"""The generated files (chart copies, deploy/kubernetes/) match their sources: `make manifests`."""

from __future__ import annotations

import difflib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tools.manifests import (
    CHART_COPIES,
    CHART_DIR,
    MANIFEST_DIR,
    MANIFESTS,
    expected_files,
    is_stale,
    main,
    shown,
    stale_message,
)

EXPECTED = expected_files()


@pytest.mark.parametrize("path", sorted(EXPECTED), ids=shown)
def test_generated_file_is_current(path: Path) -> None:
    """Each generated file equals what `make manifests` would write, or says to run it."""
    if is_stale(path, EXPECTED[path]):
        old = path.read_text().splitlines() if path.is_file() else []
        new = EXPECTED[path].decode().splitlines()
        diff = difflib.unified_diff(old, new, "on disk", "make manifests", lineterm="", n=1)
        pytest.fail(stale_message(path) + "\n" + "\n".join(list(diff)[:30]), pytrace=False)


def test_every_chart_file_is_generated() -> None:
    """The chart's files/ holds only copies `make manifests` refreshes, so none goes stale."""
    on_disk = sorted(p.relative_to(CHART_DIR).as_posix() for p in (CHART_DIR / "files").iterdir())
    assert on_disk == sorted(CHART_COPIES)


def test_no_stray_files_in_the_manifest_folder() -> None:
    """deploy/kubernetes/ holds only generated manifests, so none can go stale unnoticed."""
    assert sorted(p.name for p in MANIFEST_DIR.iterdir()) == sorted(MANIFESTS)


def test_check_mode_names_the_stale_file_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--check` writes nothing, exits 1 and names each stale file with `make manifests`."""
    expected = {tmp_path / path.name: data for path, data in EXPECTED.items()}
    for path, data in expected.items():
        path.write_bytes(data)
    edited = tmp_path / "prometheus-operator.yaml"
    edited.write_text("# edited by hand\n")
    monkeypatch.setattr("tools.manifests.expected_files", lambda: expected)
    assert main(["--check"]) == 1
    assert capsys.readouterr().out == f"{edited} is out of date: run `make manifests`\n"
    assert edited.read_text() == "# edited by hand\n"
    assert main([]) == 0
    assert edited.read_bytes() == expected[edited]
    assert main(["--check"]) == 0


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
