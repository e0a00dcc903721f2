"""Derived rates of a ProbeResult: the exact formulas and their undefined cases."""

from __future__ import annotations

import pytest

from exporter.result import DETAIL_MAX_BYTES, JobKey, ProbeResult, Reason, ServerStats, shorten

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
