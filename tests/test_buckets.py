"""Bucket boundaries keep their documented promises."""

from __future__ import annotations

import pytest

from exporter import buckets

VLLM_TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
             7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
VLLM_TPOT = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
             10.0, 20.0, 40.0, 80.0)  # fmt: skip
VLLM_E2E = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
            120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip


@pytest.mark.parametrize(
    ("ours", "vllm"),
    [
        (buckets.TTFT_BUCKETS, VLLM_TTFT),
        (buckets.TPOT_BUCKETS, VLLM_TPOT),
        (buckets.DURATION_BUCKETS, VLLM_E2E),
    ],
)
def test_superset_of_vllm_family(ours: tuple[float, ...], vllm: tuple[float, ...]) -> None:
    """Every vLLM boundary exists in ours, so le-based queries carry over."""
    assert set(vllm) <= set(ours)


@pytest.mark.parametrize(
    "family",
    [v for k, v in vars(buckets).items() if k.endswith("_BUCKETS")],
)
def test_sorted_and_unique(family: tuple[float, ...]) -> None:
    """Boundaries are strictly increasing (prometheus-client would sort silently)."""
    assert list(family) == sorted(set(family))


def test_ranges_cover_gpu_and_cpu() -> None:
    """A 20 ms GPU TTFT and a 2-minute CPU cold load both fall below the last finite bucket,
    as do 3 tok/s and 300 tok/s, and 3.3 ms per token."""
    assert buckets.TTFT_BUCKETS[0] < 0.02
    assert buckets.TTFT_BUCKETS[-1] > 120
    assert buckets.TOKENS_PER_SECOND_BUCKETS[0] < 3
    assert buckets.TOKENS_PER_SECOND_BUCKETS[-1] > 300
    assert buckets.TPOT_BUCKETS[0] < 1 / 300
