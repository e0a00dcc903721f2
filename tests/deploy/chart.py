"""Render the Helm chart offline with Helm's own engine (helm-python-sdk bundles Helm v4).

``python -m tests.deploy.chart --write`` copies the shipped rules file and dashboard into the
chart's ``files/`` (Helm cannot read outside the chart), then regenerates the plain manifests
in ``deploy/kubernetes/``. Without ``--write`` it only reports what is stale (exit 1), as the
tests do.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from tests.deploy.support import REPO_ROOT

CHART_DIR = REPO_ROOT / "deploy" / "helm" / "ollama-probe-exporter"
MANIFEST_DIR = REPO_ROOT / "deploy" / "kubernetes"
RELEASE = "ollama-probe-exporter"
# No rendered object names a namespace (kubectl apply -n picks it); only NOTES.txt uses it.
NAMESPACE = "monitoring"

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

# Chart copy in files/ → the shipped source it must equal byte for byte.
CHART_FILES: dict[str, Path] = {
    "ollama-probe-exporter.rules.yml": REPO_ROOT
    / "deploy/prometheus/ollama-probe-exporter.rules.yml",
    "ollama-probe-exporter.json": REPO_ROOT / "grafana/ollama-probe-exporter.json",
}

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
# Generated from the Helm chart deploy/helm/ollama-probe-exporter by
# `python -m tests.deploy.chart --write` (release name {release}, {values}).
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


def render_raw(values: dict[str, Any] | None = None, *, release: str = RELEASE) -> dict[str, str]:
    """Render every template (NOTES.txt included) and return template path → text."""
    with helm.Chart.load(CHART_DIR) as chart:
        return chart.render(values, name=release, namespace=NAMESPACE, is_install=True)


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


def find(docs: list[Rendered], kind: str) -> Rendered:
    """Return the only object of ``kind``; fail if there is none or more than one."""
    matches = [doc for doc in docs if doc.kind == kind]
    assert len(matches) == 1, f"expected one {kind}, got {[d.name for d in matches]}"
    return matches[0]


def manifest_text(name: str) -> str:
    """The content ``deploy/kubernetes/<name>`` must have, rendered fresh from the chart."""
    manifest = MANIFESTS[name]
    parts = [HEADER.format(release=RELEASE, values=manifest.described, name=name)]
    for doc in render(manifest.values):
        if manifest.kinds is None or doc.kind in manifest.kinds:
            parts.append(f"---\n# Source: {doc.source}\n{doc.text}\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Sync the chart's file copies and the plain manifests (``--write``), or report staleness."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="copy and regenerate the files")
    args = parser.parse_args(argv)
    expected: dict[Path, bytes] = {
        CHART_DIR / "files" / name: source.read_bytes() for name, source in CHART_FILES.items()
    }
    stale = [path for path, data in expected.items() if _differs(path, data)]
    if args.write:
        for path in stale:
            path.write_bytes(expected[path])
    # The manifests embed the file copies, so they are rendered after the copies are synced.
    manifests = {MANIFEST_DIR / name: manifest_text(name).encode() for name in MANIFESTS}
    stale += [path for path, data in manifests.items() if _differs(path, data)]
    for path in stale:
        if args.write:
            path.write_bytes(manifests.get(path, expected.get(path, b"")))
            print(f"wrote {_shown(path)}")
        else:
            print(f"{_shown(path)} is out of date: python -m tests.deploy.chart --write")
    return 0 if args.write or not stale else 1


def _differs(path: Path, data: bytes) -> bool:
    return not path.is_file() or path.read_bytes() != data


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)


if __name__ == "__main__":
    sys.exit(main())
