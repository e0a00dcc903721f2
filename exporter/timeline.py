"""The probe timeline: which event arrived when, and the ProbeResult that follows from it.

Pure bookkeeping, fed by the prober with (event, arrival time) pairs from any wire decoder,
so the definitions of TTFT, the decode span and the token count live in one small place
that a fake clock can test and that knows no wire format:

- ``t0``: when the connection started, before DNS, TCP and TLS (all of them count); the
  prober knows it only once the exchange is over (the transport stamps it), so it is given
  to ``success`` and ``failure`` rather than stored;
- ``t_first``: arrival of the first chunk with non-empty generated text, thinking included;
- ``t_first_content``: arrival of the first chunk with non-empty *answer* text;
- ``t_last``: arrival of the last chunk with generated text; ``t_done``: the final event;
- ``N``: the server's count of generated tokens (``eval_count``, ``usage.completion_tokens``),
  never the number of chunks, unless the server sent no count at all (a proxy that strips
  fields), when the text-chunk count stands in.

An answer that is not streamed (``streamed=False``) arrives in one piece: it has a duration
and the server's numbers, but no arrival of a first token and no decode span to time.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.ollama.decoding import Chunk
from exporter.result import JobKey, ProbeResult, Reason, ServerStats


@dataclass(slots=True)
class Timeline:
    """Arrival times (monotonic ns) of the events of one probe."""

    streamed: bool = True
    chunks: int = 0
    text_chunks: int = 0
    first_text_ns: int | None = None
    first_content_ns: int | None = None
    last_text_ns: int | None = None
    done_ns: int | None = None
    stats: ServerStats | None = None
    http_status: int | None = None

    def observe(self, chunk: Chunk, t_ns: int) -> None:
        """Record one non-error event that arrived at ``t_ns``."""
        self.chunks += 1
        if chunk.has_text:
            self.text_chunks += 1
            if self.first_text_ns is None:
                self.first_text_ns = t_ns
            self.last_text_ns = t_ns
        if chunk.has_content and self.first_content_ns is None:
            self.first_content_ns = t_ns
        if chunk.done:
            self.done_ns = t_ns
            self.stats = chunk.stats

    def _since(self, t0_ns: int, t_ns: int | None) -> int | None:
        return None if t_ns is None or not self.streamed else t_ns - t0_ns

    def success(self, job: JobKey, *, t0_ns: int, finished_at: float) -> ProbeResult:
        """The result of an answer that ended with its final event.

        A final event with no text before it is ``empty_response``: there is no TTFT to
        report, and a probe that generated nothing did not show the model works.
        """
        assert self.done_ns is not None
        if self.first_text_ns is None or self.last_text_ns is None:
            return self.failure(
                job,
                Reason.EMPTY_RESPONSE,
                "done, but no chunk carried text",
                t0_ns=t0_ns,
                t_ns=self.done_ns,
                finished_at=finished_at,
            )
        stats = self.stats or ServerStats()
        from_chunks = stats.eval_count <= 0
        return ProbeResult(
            job=job,
            finished_at=finished_at,
            reason=None,
            detail=f"done_reason={stats.done_reason}",
            elapsed_ns=self.done_ns - t0_ns,
            ttft_ns=self._since(t0_ns, self.first_text_ns),
            ttfct_ns=self._since(t0_ns, self.first_content_ns),
            decode_span_ns=self._since(self.first_text_ns, self.last_text_ns),
            output_tokens=self.text_chunks if from_chunks else stats.eval_count,
            tokens_from_chunks=from_chunks,
            text_chunks=self.text_chunks,
            server=stats,
            http_status=self.http_status,
            t0_ns=t0_ns,
        )

    def failure(
        self, job: JobKey, reason: Reason, detail: str, *, t0_ns: int, t_ns: int, finished_at: float
    ) -> ProbeResult:
        """A failed probe at ``t_ns``; what did arrive is kept for logs and the debug page."""
        return ProbeResult(
            job=job,
            finished_at=finished_at,
            reason=reason,
            detail=detail,
            elapsed_ns=max(0, t_ns - t0_ns),
            ttft_ns=self._since(t0_ns, self.first_text_ns),
            text_chunks=self.text_chunks,
            server=self.stats,
            http_status=self.http_status,
            t0_ns=t0_ns,
        )
