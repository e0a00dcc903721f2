"""Derived rates of a ProbeResult: the exact formulas and their undefined cases."""

from __future__ import annotations

import pytest

from exporter.result import (
    DETAIL_MAX_BYTES,
    JobKey,
    ProbeResult,
    Reason,
    Residency,
    ServerStats,
    SkipReason,
    shorten,
)

KEY = JobKey("t", "m", "p")


def result(**kw: object) -> ProbeResult:
    return ProbeResult(job=KEY, finished_at=0.0, reason=None, **kw)  # type: ignore[arg-type]


def test_client_rate_and_tpot_exclude_the_first_token() -> None:
    """64 tokens over a 1.26 s span: (N-1)/span = 50 tok/s, TPOT = span/(N-1) = 20 ms."""
    r = result(decode_span_ns=1_260_000_000, output_tokens=64)
    assert r.tokens_per_second == pytest.approx(50.0)
    assert r.time_per_output_token_seconds == pytest.approx(0.020)


@pytest.mark.parametrize(("span", "tokens"), [(None, 10), (0, 10), (1_000, 1), (1_000, 0)])
def test_client_rate_undefined(span: int | None, tokens: int) -> None:
    """N <= 1 or a zero span gives no rate at all (not a 0 that drags quantiles down)."""
    r = result(decode_span_ns=span, output_tokens=tokens)
    assert r.tokens_per_second is None
    assert r.time_per_output_token_seconds is None


def test_server_rates() -> None:
    """eval_count/eval_duration and prompt_eval_count/prompt_eval_duration, in seconds."""
    s = ServerStats(eval_count=15, eval_duration_ns=104_803_000, prompt_eval_count=41,
                    prompt_eval_duration_ns=58_120_000)  # fmt: skip
    r = result(server=s)
    assert r.server_tokens_per_second == pytest.approx(15 / 0.104803)
    assert r.prompt_tokens_per_second == pytest.approx(41 / 0.05812)


def test_server_rates_undefined_when_not_reported() -> None:
    """Omitted (zero) counts or durations give no server rate."""
    assert result(server=ServerStats(eval_count=5)).server_tokens_per_second is None
    assert result(server=ServerStats(prompt_eval_count=5)).prompt_tokens_per_second is None
    assert result().server_tokens_per_second is None


@pytest.mark.parametrize(
    "text",
    ["x" * 10_000_000, "é" * 1000, "a" * (DETAIL_MAX_BYTES + 1), "🦙" * 200],
)
def test_detail_is_cut_where_the_result_is_built(text: str) -> None:
    """Whoever builds a result, its detail is at most DETAIL_MAX_BYTES of UTF-8, whole
    characters only, and says it was cut."""
    r = ProbeResult(job=KEY, finished_at=0.0, reason=Reason.STREAM_ERROR, detail=text)
    encoded = r.detail.encode()
    assert len(encoded) <= DETAIL_MAX_BYTES
    assert r.detail.endswith("…")
    assert text.startswith(r.detail.removesuffix("…"))


@pytest.mark.parametrize("text", ["", "short", "a" * DETAIL_MAX_BYTES])
def test_short_detail_is_kept_whole(text: str) -> None:
    """A detail that fits is the very same string."""
    assert shorten(text) is text


def stream(t0_ms: int, elapsed_ms: int, tokens: int, reason: Reason | None = None) -> ProbeResult:
    return ProbeResult(job=KEY, finished_at=0.0, reason=reason, t0_ns=t0_ms * 1_000_000,
                       elapsed_ns=elapsed_ms * 1_000_000, output_tokens=tokens)  # fmt: skip


def test_parallel_rate_is_all_tokens_over_the_wall_time() -> None:
    """Streams at 0-500 ms, 10-510 ms and 5-1000 ms with 64 tokens each: 192 tokens in the
    1 s from the earliest start to the latest end."""
    r = result(streams=(stream(0, 500, 64), stream(10, 500, 64), stream(5, 995, 64)))
    assert r.parallel_tokens_per_second == pytest.approx(192.0)


def test_parallel_rate_needs_every_stream() -> None:
    """One failed stream (its tokens missing) or a single-stream run gives no aggregate."""
    failed = stream(0, 500, 0, Reason.TRUNCATED)
    assert result(streams=(stream(0, 500, 64), failed)).parallel_tokens_per_second is None
    assert result(output_tokens=64, elapsed_ns=10**9).parallel_tokens_per_second is None


def test_a_skipped_run_is_not_a_success() -> None:
    """No reason and a skip: neither success nor failure."""
    r = result(skipped=SkipReason.NOT_LOADED)
    assert (r.success, r.reason) == (False, None)


def test_prompt_tokens_as_the_server_counted() -> None:
    """prompt_eval_count (or usage.prompt_tokens); None when not reported."""
    assert result(server=ServerStats(prompt_eval_count=1000)).prompt_tokens == 1000
    assert result(server=ServerStats()).prompt_tokens is None
    assert result().prompt_tokens is None


@pytest.mark.parametrize(
    ("loaded", "size", "vram", "partial"),
    [(True, 100, 100, False), (True, 100, 40, True), (True, 100, 0, True), (False, 0, 0, False)],
)
def test_partial_offload(loaded: bool, size: int, vram: int, partial: bool) -> None:
    """Less in VRAM than the model's size, while loaded (a CPU-only load included)."""
    assert Residency("m", loaded, size, vram).partial_offload is partial
