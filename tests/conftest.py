"""Test tiers by folder, so ``make test-fast`` can leave out what starts processes or tools.

- ``e2e``: real processes (the exporter, the simulator, Prometheus) talking over loopback;
- ``deploy``: deploy artefacts checked with their real tools (Helm, promtool, hadolint, …);
- ``slow``: a test that needs more than a couple of seconds: the hostile-server suite
  (``tests/hostile``, stress cases over loopback) and tests marked by hand.

- ``timing``: a test whose assertions compare measured times (each against a baseline measured
  in the same test). ``make test`` runs everything else on three workers, then these alone, so
  its own workers are not the load they measure against.

``make test-fast`` runs ``-m "not e2e and not deploy and not slow"``; ``make test`` runs all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent
_FOLDER_MARKS = {
    "e2e": "e2e",
    "deploy": "deploy",
    "rules": "deploy",
    "dashboard": "deploy",
    "hostile": "slow",
}


_TIMING_FILES = frozenset(
    {
        "integration/test_probe_accuracy.py",
        "hostile/test_timing.py",
        "simulator/test_timing.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.path).relative_to(TESTS)
        mark = _FOLDER_MARKS.get(path.parts[0]) if len(path.parts) > 1 else None
        if mark is not None:
            item.add_marker(getattr(pytest.mark, mark))
        if path.as_posix() in _TIMING_FILES:
            item.add_marker(pytest.mark.timing)
            item.add_marker(pytest.mark.xdist_group("timing"))
