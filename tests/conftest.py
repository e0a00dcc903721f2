"""Test tiers by folder, so ``make test-fast`` can leave out what starts processes or tools.

- ``e2e``: real processes (the exporter, the simulator, Prometheus) talking over loopback;
- ``deploy``: deploy artefacts checked with their real tools (Helm, promtool, hadolint, …);
- ``slow``: a test that needs more than a couple of seconds: the hostile-server suite
  (``tests/hostile``, stress cases over loopback) and tests marked by hand.

- ``timing``: a test whose assertions compare measured times (each against a baseline measured
  in the same test, so that load is in both). They share one xdist group: under
  ``--dist loadgroup`` (``make test``) one worker runs them one at a time, beside the rest.

``make test-fast`` runs ``-m "not e2e and not deploy and not slow"``; ``make test`` runs all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dashboard.workloads import every_series_exposition

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


_SHARED_SETUPS = ("stack", "exposition", "demo_exposition")
"""Fixtures, module- or session-scoped, that start processes and wait for their metrics. The
tests that use one form one xdist group: under ``--dist loadgroup`` (``make test``) one
worker sets it up once and runs them all, where spreading them would set it up on every
worker."""


@pytest.fixture(scope="session")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The real exporters' /metrics with every series the exporter can export, for the rule
    and dashboard tests that compare their names against it."""
    return every_series_exposition(tmp_path_factory.mktemp("exporter"))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks into node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.path).relative_to(TESTS)
        mark = _FOLDER_MARKS.get(path.parts[0]) if len(path.parts) > 1 else None
        if mark is not None:
            item.add_marker(getattr(pytest.mark, mark))
        timing = path.as_posix() in _TIMING_FILES
        if timing:
            item.add_marker(pytest.mark.timing)
        # One group per test (xdist would join two names into a third group): the timing
        # group first, as one at a time is what keeps their measurements apart.
        uses = getattr(item, "fixturenames", ())
        group = "timing" if timing else next((f for f in _SHARED_SETUPS if f in uses), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a grouped test if ``--dist loadgroup`` ignored its group: pytest-xdist marks a
    grouped test by a ``@group`` suffix on its node id, which pytest 9.2 no longer keeps
    (pytest-xdist#1386), and the timing tests would then run side by side, silently."""
    if not getattr(item.config.option, "loadgroup", False):  # set on xdist's workers only
        return
    if item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
        pytest.fail(
            f"--dist loadgroup ignored this test's xdist_group with pytest {pytest.__version__}"
            " (pytest-xdist#1386): install the pytest that pyproject.toml pins",
            pytrace=False,
        )
