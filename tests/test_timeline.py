"""The timeline's definitions of TTFT, decode span and token count, with exact numbers."""

from __future__ import annotations

import pytest

from exporter.ollama.decoding import Chunk
from exporter.result import JobKey, Reason, ServerStats
from exporter.timeline import Timeline

KEY = JobKey("t", "m", "p")
MS = 1_000_000


def text() -> Chunk:
    return Chunk(has_text=True, done=False)


def empty() -> Chunk:
    return Chunk(has_text=False, done=False)


def done(eval_count: int = 0, eval_ns: int = 0, has_text: bool = False) -> Chunk:
    stats = ServerStats(eval_count=eval_count, eval_duration_ns=eval_ns, done_reason="length")
    return Chunk(has_text=has_text, done=True, stats=stats)


class TestSuccess:
    def test_ttft_and_span_use_text_chunks_only(self) -> None:
        """TTFT ends at the first *text* chunk; an earlier empty chunk does not count."""
        tl = Timeline()
        tl.observe(empty(), 50 * MS)
        tl.observe(text(), 120 * MS)
        tl.observe(text(), 140 * MS)
        tl.observe(text(), 160 * MS)
        tl.observe(done(eval_count=3, eval_ns=40 * MS), 170 * MS)
        r = tl.success(KEY, t0_ns=0, finished_at=0.0)
        assert r.reason is None
        assert r.ttft_ns == 120 * MS
        assert r.decode_span_ns == 40 * MS
        assert r.elapsed_ns == 170 * MS
        assert r.output_tokens == 3
        assert not r.tokens_from_chunks

    def test_tokens_come_from_eval_count_not_chunks(self) -> None:
        """Five text chunks but eval_count 9: N is 9 (a chunk may hold several tokens)."""
        tl = Timeline()
        for i in range(5):
            tl.observe(text(), 1000 + (i + 1) * 10 * MS)
        tl.observe(done(eval_count=9, eval_ns=80 * MS), 1000 + 60 * MS)
        r = tl.success(KEY, t0_ns=1000, finished_at=0.0)
        assert r.output_tokens == 9
        assert r.text_chunks == 5
        assert r.tokens_per_second == pytest.approx(8 / 0.040)

    def test_chunk_count_fallback_without_eval_count(self) -> None:
        """With no eval_count the text-chunk count stands in, flagged as such."""
        tl = Timeline()
        for i in range(4):
            tl.observe(text(), (i + 1) * MS)
        tl.observe(done(), 5 * MS)
        r = tl.success(KEY, t0_ns=0, finished_at=0.0)
        assert r.output_tokens == 4
        assert r.tokens_from_chunks

    def test_text_in_done_chunk_counts(self) -> None:
        """Older servers put the last token in the done chunk: it is t_last."""
        tl = Timeline()
        tl.observe(text(), 10 * MS)
        tl.observe(done(eval_count=2, eval_ns=5 * MS, has_text=True), 30 * MS)
        r = tl.success(KEY, t0_ns=0, finished_at=0.0)
        assert r.decode_span_ns == 20 * MS

    def test_done_without_text_is_empty_response(self) -> None:
        """A done chunk with nothing generated before it fails as empty_response."""
        tl = Timeline()
        tl.observe(empty(), 5 * MS)
        tl.observe(done(), 7 * MS)
        r = tl.success(KEY, t0_ns=0, finished_at=0.0)
        assert r.reason is Reason.EMPTY_RESPONSE
        assert r.elapsed_ns == 7 * MS


class TestFailure:
    def test_failure_keeps_what_arrived(self) -> None:
        """A failure after text still reports TTFT and the elapsed time until failure."""
        tl = Timeline()
        tl.observe(text(), 100 + 30 * MS)
        r = tl.failure(
            KEY, Reason.STREAM_ERROR, "boom", t0_ns=100, t_ns=100 + 90 * MS, finished_at=5.0
        )
        assert (r.reason, r.detail, r.finished_at) == (Reason.STREAM_ERROR, "boom", 5.0)
        assert r.ttft_ns == 30 * MS
        assert r.elapsed_ns == 90 * MS
        assert r.tokens_per_second is None
