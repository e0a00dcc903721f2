"""Paths, tools and the exporter's own config check, shared by the deploy tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from exporter.cli import DEFAULT_PORT
from tests.support.processes import child_env
from tests.support.tools import require_tool

if TYPE_CHECKING:
    from tools.manifests import Rendered

__all__ = [
    "DEFAULT_PORT",
    "REPO_ROOT",
    "child_env",
    "config_check",
    "find",
    "load_yaml",
    "require_tool",
]

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_yaml(path: Path) -> Any:
    """Parse one YAML document from a file."""
    return yaml.safe_load(path.read_text())


def config_check(
    config_file: Path, env: dict[str, str] | None = None, *, executable: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``--config.file FILE --config.check`` with the real exporter and return the result."""
    command = executable or [sys.executable, "-m", "exporter"]
    return subprocess.run(
        [*command, "--config.file", str(config_file), "--config.check"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(env),
        check=False,
    )


def find(docs: list[Rendered], kind: str) -> Rendered:
    """Return the only rendered object of ``kind``; fail if there is none or more than one."""
    matches = [doc for doc in docs if doc.kind == kind]
    assert len(matches) == 1, f"expected one {kind}, got {[d.name for d in matches]}"
    return matches[0]
