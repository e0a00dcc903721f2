"""Smoke runs of the benchmarks: they start, measure and report. No figure is asserted:
on a shared machine the numbers belong in the docs, not in a pass/fail."""

from __future__ import annotations

import io

import pytest

from benchmarks import soak


@pytest.mark.slow
@pytest.mark.e2e
def test_soak_runs_and_samples() -> None:
    """A few seconds of the soak: the daemon ran, every sample read /proc and scraped, and
    the summary names every measure."""
    out = io.StringIO()
    report = soak.soak(minutes=0.05, sample_every=1.0, out=out)
    assert len(report.samples) >= 2
    assert report.jobs >= 30
    for sample in report.samples:
        assert sample.rss_mib > 0
        assert sample.fds > 0
        assert sample.threads >= 1
        assert sample.scrape_ms > 0
    assert report.samples[-1].runs > report.samples[0].runs  # probes ran meanwhile
    assert report.tracebacks == 0
    text = out.getvalue()
    for measure in ("RSS MiB", "open fds", "threads", "scrape ms"):
        assert measure in text
    assert "flat" in text or "grew by" in text
