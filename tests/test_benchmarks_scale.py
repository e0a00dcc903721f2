"""Tiny runs of the performance benchmarks, so they keep working; no timing is judged here
(the numbers are ``make bench``'s, in docs/performance.md)."""

from __future__ import annotations

import logging

import pytest

from benchmarks import __main__ as suite
from benchmarks import cpu_per_chunk, scrape


@pytest.mark.slow
def test_cpu_per_chunk_runs_every_client_on_every_wire() -> None:
    rows = cpu_per_chunk.run(rounds=1, tokens=10, apis=("generate", "chat", "openai"),
                             interval=0.0005)  # fmt: skip
    for row in rows.values():
        for client in cpu_per_chunk.CLIENTS:
            assert len(row.samples[client]) == 1
            assert row.samples[client][0] > 0
        assert row.ratios("exporter")[0] > 0


@pytest.mark.slow
@pytest.mark.parametrize("baseline", [False, True])
def test_scrape_fleet_serves_every_format_at_rest_and_in_a_burst(baseline: bool) -> None:
    report = scrape.measure_fleet(1, 2, 3, scrapes=1, burst_s=0.3, baseline=baseline)
    assert report.jobs == 6
    first = report.text[0]
    assert first.lines > 6 * 100  # every job's histograms
    assert report.gzipped[0].lines == first.lines
    assert report.gzipped[0].wire_bytes < first.body_bytes
    assert report.openmetrics
    assert report.burst
    assert report.burst_results > 0
    assert report.rss_peak_mib >= report.rss_rest_mib > 0


@pytest.mark.slow
def test_suite_prints_one_table() -> None:
    """The whole suite at its smallest: CPU, accuracy and scrape rows, each with a baseline."""
    root = logging.getLogger()
    level = root.level
    lines = suite.run(suite.SMOKE)
    assert root.level == level  # a later test's warnings are still seen
    text = "\n".join(lines)
    assert lines[0].startswith("make bench: ")
    for row in ("CPU µs/chunk, generate", "classic loop", "plain httpx", "floor", "lean",
                "TTFT error ms, gpu-like", "scrape ms, gzip, 33 results/s", "prometheus-client",
                "RSS MiB at rest / peak", "TTFT error ms, 4 jobs", "in step, loop stamps",
                "loop lag ms p99"):  # fmt: skip
        assert row in text, row
