"""Bucket boundaries keep their documented promises."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from exporter import buckets
from exporter.recorder import LOOP_LAG_BUCKETS, RENDER_BUCKETS, START_DELAY_BUCKETS

REPO = Path(__file__).resolve().parent.parent
FAMILIES = {
    "ollama_probe_time_to_first_token_seconds": buckets.TTFT_BUCKETS,
    "ollama_probe_time_to_first_content_token_seconds": buckets.TTFT_BUCKETS,
    "ollama_probe_load_duration_seconds": buckets.TTFT_BUCKETS,
    "ollama_probe_time_per_output_token_seconds": buckets.TPOT_BUCKETS,
    "ollama_probe_duration_seconds": buckets.DURATION_BUCKETS,
    "ollama_probe_tokens_per_second": buckets.TOKENS_PER_SECOND_BUCKETS,
    "ollama_probe_server_tokens_per_second": buckets.TOKENS_PER_SECOND_BUCKETS,
    "ollama_probe_parallel_tokens_per_second": buckets.TOKENS_PER_SECOND_BUCKETS,
    "ollama_probe_prompt_tokens_per_second": buckets.PROMPT_TOKENS_PER_SECOND_BUCKETS,
    "ollama_probe_error_duration_seconds": buckets.ERROR_DURATION_BUCKETS,
    "ollama_probe_exporter_event_loop_lag_seconds": LOOP_LAG_BUCKETS,
    "ollama_probe_exporter_probe_start_delay_seconds": START_DELAY_BUCKETS,
    "ollama_probe_exporter_metrics_render_seconds": RENDER_BUCKETS,
}
# Where an `le` can be named: the shipped rules, their unit tests, the README's queries and
# the docs, the dashboard.
QUERY_FILES = [
    *REPO.glob("deploy/prometheus/*.yml"),
    *REPO.glob("tests/rules/*.yml"),
    REPO / "README.md",
    *REPO.glob("docs/*.md"),
    *REPO.glob("grafana/*.json"),
]
# A bucket series, then its labels up to and including le="...": selectors and test inputs.
LE = re.compile(r'(ollama_probe_\w+?)_bucket\{[^}]*?le=\\?"([^"\\]+)\\?"')


def named_bounds() -> set[tuple[str, str]]:
    found = set()
    for path in QUERY_FILES:
        found |= set(LE.findall(path.read_text()))
    return found


def test_every_named_le_is_a_boundary() -> None:
    """Every ``le`` a rule, a rule test, the README, the docs or the dashboard selects exists,
    spelled as the exporter spells it (so those queries keep working)."""
    named = named_bounds()
    assert ("ollama_probe_load_duration_seconds", "1.0") in named  # the pattern finds them
    for metric, le in named:
        if le == "+Inf":
            continue
        assert metric in FAMILIES, metric
        assert le in {repr(float(b)) for b in FAMILIES[metric]}, (metric, le)


def test_ttft_slo_threshold_is_a_boundary() -> None:
    """The TTFT alert's default threshold sits on a boundary, so p95 is not interpolated
    across it."""
    rules = (REPO / "deploy/prometheus/ollama-probe-exporter.rules.yml").read_text()
    threshold = re.search(
        r"ollama_probe_ttft_slo_seconds:threshold\n\s+expr: vector\((\S+)\)", rules
    )
    assert threshold is not None
    assert float(threshold.group(1)) in buckets.TTFT_BUCKETS


@pytest.mark.parametrize(
    ("record", "bounds"),
    [
        ("ollama_probe_exporter_loop_lag_seconds", LOOP_LAG_BUCKETS),
        ("ollama_probe_exporter_start_delay_seconds", START_DELAY_BUCKETS),
    ],
)
def test_exporter_overloaded_thresholds_are_boundaries(
    record: str, bounds: tuple[float, ...]
) -> None:
    """OllamaProbeExporterOverloaded's default thresholds sit on a boundary of the histogram
    whose p99 they judge, so the p99 is not interpolated across them."""
    rules = (REPO / "deploy/prometheus/ollama-probe-exporter.rules.yml").read_text()
    threshold = re.search(rf":{record}:threshold\n\s+expr: vector\((\S+)\)", rules)
    assert threshold is not None
    assert float(threshold.group(1)) in bounds


@pytest.mark.parametrize(
    "family",
    [v for k, v in vars(buckets).items() if k.endswith("_BUCKETS")],
)
def test_sorted_and_unique(family: tuple[float, ...]) -> None:
    """Boundaries are strictly increasing (prometheus-client would sort silently)."""
    assert list(family) == sorted(set(family))


@pytest.mark.parametrize(
    "family",
    [v for k, v in vars(buckets).items() if k.endswith("_BUCKETS") and not k.startswith("ERROR")],
)
def test_steps_of_at_most_two_and_a_half(family: tuple[float, ...]) -> None:
    """Neighbours differ by at most 2.5x, so a quantile interpolated within a bucket is off
    by less than that bucket's width (the error histogram is coarse on purpose)."""
    assert all(b / a <= 2.5 for a, b in itertools.pairwise(family))


def test_ranges_cover_gpu_and_cpu() -> None:
    """A 20 ms GPU TTFT and a 2-minute CPU cold load both fall below the last finite bucket,
    as do 3 tok/s and 300 tok/s, and 3.3 ms per token."""
    assert buckets.TTFT_BUCKETS[0] < 0.02
    assert buckets.TTFT_BUCKETS[-1] > 120
    assert buckets.TOKENS_PER_SECOND_BUCKETS[0] < 3
    assert buckets.TOKENS_PER_SECOND_BUCKETS[-1] > 300
    assert buckets.TPOT_BUCKETS[0] < 1 / 300


def test_timeouts_sit_on_boundaries() -> None:
    """The usual timeouts (30, 60, 120 s) are boundaries of the latency families, so a
    timed-out probe is told apart from one that nearly timed out."""
    for family in (buckets.TTFT_BUCKETS, buckets.DURATION_BUCKETS):
        assert {30.0, 60.0, 120.0} <= set(family)
