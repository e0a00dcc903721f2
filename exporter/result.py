"""The plain outcome of one probe: what the prober hands to the recorder.

Nothing here knows about HTTP or Prometheus. Timings are integer nanoseconds from one
monotonic clock, measured from ``t0`` (just before the request was sent), so the maths in
the derived properties is exact and testable with a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

NS_PER_S = 1_000_000_000

# A failure's detail often quotes the server (an error message, a bad line). It goes to a
# log line per failed probe and to the landing page, so it is cut to this many UTF-8 bytes:
# a server answering with megabytes of error text must not grow the log by as much.
DETAIL_MAX_BYTES = 300
ELLIPSIS = "…"


def shorten(text: str, max_bytes: int = DETAIL_MAX_BYTES) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, ending in "…" when it was cut."""
    head = text[: max_bytes + 1]  # never encode more than needed: text can be megabytes
    encoded = head.encode("utf-8", "surrogatepass")
    if len(head) == len(text) and len(encoded) <= max_bytes:
        return text
    room = max(0, max_bytes - len(ELLIPSIS.encode()))
    return encoded[:room].decode("utf-8", "ignore") + ELLIPSIS


class Reason(StrEnum):
    """Why a probe failed: a closed set, used verbatim as the ``reason`` label."""

    CONNECT_ERROR = "connect_error"
    TLS_ERROR = "tls_error"
    MODEL_NOT_FOUND = "model_not_found"
    SERVER_BUSY = "server_busy"
    HTTP_ERROR = "http_error"
    TIMEOUT_FIRST_TOKEN = "timeout_first_token"
    TIMEOUT_STALL = "timeout_stall"
    TIMEOUT_TOTAL = "timeout_total"
    STREAM_ERROR = "stream_error"
    TRUNCATED = "truncated"
    INVALID_RESPONSE = "invalid_response"
    EMPTY_RESPONSE = "empty_response"


@dataclass(frozen=True, slots=True)
class JobKey:
    """The label values of one (target, model, probe) job; all of them come from config."""

    target: str
    model: str
    probe: str

    def __str__(self) -> str:
        return f"{self.target}/{self.model}/{self.probe}"


@dataclass(frozen=True, slots=True)
class ServerStats:
    """The counters and durations of Ollama's final (``done: true``) chunk.

    Ollama omits every metric whose value is zero, so a missing field is stored as 0.
    Durations are the server's integer nanoseconds.
    """

    eval_count: int = 0
    eval_duration_ns: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration_ns: int = 0
    load_duration_ns: int = 0
    total_duration_ns: int = 0
    done_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One finished probe, success or failure.

    Fields:
        job: the (target, model, probe) label values.
        finished_at: unix time (seconds) when the probe finished, for the last-run gauge.
        reason: ``None`` on success, else the single reason the probe failed.
        detail: a short human-readable explanation of a failure (logs only, never a label),
            cut to ``DETAIL_MAX_BYTES`` here, whoever built the result.
        elapsed_ns: t_end - t0, where t_end is the done chunk on success or the failure moment.
        ttft_ns: t_first - t0, arrival of the first chunk with non-empty generated text
            (thinking included); ``None`` if no text arrived.
        decode_span_ns: t_last - t_first, between the first and the last chunk carrying text;
            ``None`` if no text arrived.
        output_tokens: N, ``eval_count`` from the done chunk, or the number of text chunks
            when the server sent no count (see ``tokens_from_chunks``).
        tokens_from_chunks: True when ``output_tokens`` is the chunk-count fallback.
        text_chunks: how many chunks carried non-empty text (for logs and debugging).
        server: the done chunk's statistics; ``None`` when no done chunk arrived.
        http_status: the response status, if one arrived.
    """

    job: JobKey
    finished_at: float
    reason: Reason | None
    detail: str = ""
    elapsed_ns: int = 0
    ttft_ns: int | None = None
    decode_span_ns: int | None = None
    output_tokens: int = 0
    tokens_from_chunks: bool = False
    text_chunks: int = 0
    server: ServerStats | None = None
    http_status: int | None = None

    def __post_init__(self) -> None:
        short = shorten(self.detail)
        if short is not self.detail:
            object.__setattr__(self, "detail", short)  # frozen: this is the one place

    @property
    def success(self) -> bool:
        return self.reason is None

    @property
    def tokens_per_second(self) -> float | None:
        """Client-observed decode rate, (N - 1) / (t_last - t_first); None when undefined."""
        if self.decode_span_ns is None or self.decode_span_ns <= 0 or self.output_tokens < 2:
            return None
        return (self.output_tokens - 1) * NS_PER_S / self.decode_span_ns

    @property
    def time_per_output_token_seconds(self) -> float | None:
        """(t_last - t_first) / (N - 1): decode time per token, first token excluded."""
        if self.decode_span_ns is None or self.decode_span_ns <= 0 or self.output_tokens < 2:
            return None
        return self.decode_span_ns / NS_PER_S / (self.output_tokens - 1)

    @property
    def server_tokens_per_second(self) -> float | None:
        """eval_count / eval_duration, Ollama's own decode rate; None when either is 0."""
        s = self.server
        if s is None or s.eval_count <= 0 or s.eval_duration_ns <= 0:
            return None
        return s.eval_count * NS_PER_S / s.eval_duration_ns

    @property
    def prompt_tokens_per_second(self) -> float | None:
        """prompt_eval_count / prompt_eval_duration (prefill); None when either is 0."""
        s = self.server
        if s is None or s.prompt_eval_count <= 0 or s.prompt_eval_duration_ns <= 0:
            return None
        return s.prompt_eval_count * NS_PER_S / s.prompt_eval_duration_ns
