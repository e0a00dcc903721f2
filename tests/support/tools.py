"""Command-line tools the tests run for real (promtool, prometheus, helm, hadolint, …)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def require_tool(name: str) -> str:
    """Return the path of a command-line tool, looking next to this Python first (the venv).

    A missing tool fails the test rather than skipping it: every tool is installed by the
    project's own files (``pip install -e '.[test]'`` or the Makefile's Debian packages).
    """
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(
            f"{name} is not installed; `make install-test system-deps` installs it"
        )
    return found


def run_tool(
    name: str, *args: str, input: str | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a required tool with ``args``, capturing text output; the caller asserts."""
    return subprocess.run(
        [require_tool(name), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
