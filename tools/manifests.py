"""Regenerate every file that copies or renders another one: ``make manifests``.

Helm cannot read outside its chart, so the chart carries copies of the shipped rules file and
dashboard in ``files/``; ``deploy/kubernetes/`` holds the chart rendered for users without
Helm. Both are produced here, by one command, from their single sources::

    python -m tools.manifests           # rewrite whatever is out of date (make manifests)
    python -m tools.manifests --check   # only list it, exit 1 if anything is

The chart is always rendered from an in-memory archive whose ``files/`` come straight from the
sources, never from the copies on disk. So a render (and every Helm test built on it) sees the
sources as they are now, and a stale copy shows up in one place: the ``--check`` report.
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART_DIR = REPO_ROOT / "deploy" / "helm" / "ollama-probe-exporter"
MANIFEST_DIR = REPO_ROOT / "deploy" / "kubernetes"
RULES_FILE = REPO_ROOT / "deploy" / "prometheus" / "ollama-probe-exporter.rules.yml"
DASHBOARD_FILE = REPO_ROOT / "grafana" / "ollama-probe-exporter.json"
COMMAND = "make manifests"
RELEASE = "ollama-probe-exporter"
# No rendered object names a namespace (kubectl apply -n picks it); only NOTES.txt uses it.
NAMESPACE = "monitoring"

CHART_COPIES: dict[str, Path] = {
    "files/ollama-probe-exporter.rules.yml": RULES_FILE,
    "files/ollama-probe-exporter.json": DASHBOARD_FILE,
}
"""Path inside the chart → the source it copies byte for byte."""

# The order `helm template` and `helm install` use (Helm's kind sorter), for readable output.
INSTALL_ORDER = [
    "Namespace",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "Service",
    "Deployment",
    "ServiceMonitor",
    "PrometheusRule",
]

OPERATOR_VALUES: dict[str, Any] = {
    "serviceMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True},
}


@dataclass(frozen=True, slots=True)
class Manifest:
    """A file in deploy/kubernetes/: the values it is rendered with and the kinds it keeps."""

    values: dict[str, Any]
    described: str
    kinds: frozenset[str] | None = None


MANIFESTS: dict[str, Manifest] = {
    "ollama-probe-exporter.yaml": Manifest({}, "default values"),
    "prometheus-operator.yaml": Manifest(
        OPERATOR_VALUES,
        "serviceMonitor.enabled=true, prometheusRule.enabled=true",
        frozenset({"ServiceMonitor", "PrometheusRule"}),
    ),
}

HEADER = """\
# Generated from the Helm chart deploy/helm/ollama-probe-exporter by `{command}`
# (release name {release}, {values}).
# Do not edit: change the chart and regenerate; a test fails when the two differ.
# Apply: kubectl apply --namespace monitoring -f deploy/kubernetes/{name}
"""


@dataclass(frozen=True, slots=True)
class Rendered:
    """One rendered Kubernetes object: its template, its YAML text and the parsed object."""

    source: str
    text: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


def chart_archive() -> bytes:
    """The chart as a ``.tgz``, with ``files/`` taken from the sources instead of the copies."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(CHART_DIR.rglob("*")):
            inside = path.relative_to(CHART_DIR).as_posix()
            if path.is_file() and inside not in CHART_COPIES:
                archive.add(path, f"{CHART_DIR.name}/{inside}")
        for inside, source in CHART_COPIES.items():
            data = source.read_bytes()
            info = tarfile.TarInfo(f"{CHART_DIR.name}/{inside}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def render_raw(values: dict[str, Any] | None = None, *, release: str = RELEASE) -> dict[str, str]:
    """Render every template (NOTES.txt included) and return template path → text."""
    with helm.Chart.load_archive(chart_archive()) as chart:
        rendered: dict[str, str] = chart.render(
            values, name=release, namespace=NAMESPACE, is_install=True
        )
    return rendered


def _sort_key(doc: Rendered) -> tuple[int, str, str]:
    order = INSTALL_ORDER.index(doc.kind) if doc.kind in INSTALL_ORDER else len(INSTALL_ORDER)
    return (order, doc.source, doc.name)


def render(values: dict[str, Any] | None = None, *, release: str = RELEASE) -> list[Rendered]:
    """Render the chart and parse each object, in Helm's install order."""
    docs = []
    for source, text in render_raw(values, release=release).items():
        if not source.endswith((".yaml", ".yml")):
            continue
        for part in text.split("\n---\n"):
            obj = yaml.safe_load(part)
            if obj is not None:
                docs.append(Rendered(source, part.strip(), obj))
    return sorted(docs, key=_sort_key)


def manifest_text(name: str) -> str:
    """The content ``deploy/kubernetes/<name>`` must have, rendered fresh from the chart."""
    manifest = MANIFESTS[name]
    parts = [HEADER.format(command=COMMAND, release=RELEASE, values=manifest.described, name=name)]
    for doc in render(manifest.values):
        if manifest.kinds is None or doc.kind in manifest.kinds:
            parts.append(f"---\n# Source: {doc.source}\n{doc.text}\n")
    return "".join(parts)


def expected_files() -> dict[Path, bytes]:
    """Every generated file → the content it must have."""
    expected = {CHART_DIR / inside: source.read_bytes() for inside, source in CHART_COPIES.items()}
    for name in MANIFESTS:
        expected[MANIFEST_DIR / name] = manifest_text(name).encode()
    return expected


def is_stale(path: Path, content: bytes) -> bool:
    """True if ``path`` is missing or differs from ``content``."""
    return not path.is_file() or path.read_bytes() != content


def shown(path: Path) -> str:
    """``path`` relative to the repository, as messages print it."""
    return str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)


def stale_message(path: Path) -> str:
    """What a check prints for a stale file: which one, and the command that fixes it."""
    return f"{shown(path)} is out of date: run `{COMMAND}`"


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the stale generated files, or with ``--check`` list them and exit 1."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    stale = {path: data for path, data in expected_files().items() if is_stale(path, data)}
    for path, data in stale.items():
        if args.check:
            print(stale_message(path))
        else:
            path.write_bytes(data)
            print(f"wrote {shown(path)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
