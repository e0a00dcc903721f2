"""The exporter's own delay and render-time histograms: their buckets are the ones the README lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.recorder import LOOP_LAG_BUCKETS, RENDER_BUCKETS, START_DELAY_BUCKETS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("buckets", [LOOP_LAG_BUCKETS, START_DELAY_BUCKETS, RENDER_BUCKETS])
def test_buckets_are_documented(buckets: tuple[float, ...]) -> None:
    row = " ".join(f"{b:g}" for b in buckets)
    assert f"| {row} |" in README
