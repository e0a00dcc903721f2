"""The plain outcome of one probe: what the prober hands to the recorder.

Nothing here knows about HTTP or Prometheus. Timings are integer nanoseconds from one
monotonic clock, measured from ``t0`` (just before the request was sent), so the maths in
the derived properties is exact and testable with a fake clock.
"""

from __future__ import annotations

import json
from collections.abc import Collection
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


# A server may echo what it was sent (an error body quoting the request's headers, a proxy's
# diagnostic page), so the target's header values are scrubbed from a detail that quotes it.
REDACTED = "[redacted]"
# Shorter header values are not scrubbed from details: they cannot be secrets worth the
# name (``X-Debug: 1``), and replacing every "1" would garble the text.
REDACT_MIN_CHARS = 4


def _secret_forms(values: Collection[str]) -> list[str]:
    """Each value as it may be quoted back: as is, JSON-escaped, as a Python str or bytes repr
    (details quote bad bytes with ``repr``); longest first, so no form is cut by a shorter."""
    forms: set[str] = set()
    for value in values:
        if len(value) < REDACT_MIN_CHARS:
            continue
        forms.update(
            (value, json.dumps(value)[1:-1], repr(value)[1:-1], repr(value.encode())[2:-1])
        )
    return sorted(forms, key=len, reverse=True)


def _cut_prefix(text: str, end: int, secret: str) -> int:
    """Length of the longest head of ``secret`` (at least ``REDACT_MIN_CHARS``) that ends
    ``text[:end]``: what is left of a secret that a detail was cut through."""
    # Any such head starts with the secret's first characters within reach of ``end``: one
    # search rules most cuts out, instead of a string built per candidate length (a hostile
    # error body can be all ellipses).
    if text.find(secret[:REDACT_MIN_CHARS], max(0, end - len(secret) + 1), end) < 0:
        return 0
    for size in range(min(len(secret) - 1, end), REDACT_MIN_CHARS - 1, -1):
        if text.startswith(secret[:size], end - size):
            return size
    return 0


def redact(text: str, secrets: Collection[str]) -> str:
    """``text`` with every header value in ``secrets`` replaced by ``[redacted]``.

    Also the head of a value where a detail was cut short, at an ellipsis or at the very end
    (an error body is quoted up to a byte count, which can fall inside a value).
    """
    forms = _secret_forms(secrets)
    if not forms or not text:
        return text
    for form in forms:
        text = text.replace(form, REDACTED)
    cuts = [i for i, char in enumerate(text) if char == ELLIPSIS] + [len(text)]
    for end in reversed(cuts):  # from the end: a replacement moves nothing still to check
        for form in forms:
            size = _cut_prefix(text, end, form)
            if size:
                text = text[: end - size] + REDACTED + text[end:]
                break
    return text


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


class SkipReason(StrEnum):
    """Why a run sent no generation at all: a closed set, the ``reason`` label of skips."""

    NOT_LOADED = "not_loaded"


@dataclass(frozen=True, slots=True)
class JobShape:
    """What a job's profile decides about its series, besides the label values.

    The recorder creates a job's series from its key alone (the daemon hands it keys), so
    the key says which families can ever be observed for the job: a series that can never
    move is not pre-created.

    Fields:
        parallel: streams per run; the ``parallel`` label of the per-stream histograms.
        streamed: whether the answer is streamed; without it there is no time to first
            token and no client-observed decode rate.
        server_timings: whether the wire reports Ollama's durations (``/api/*``: yes;
            ``/v1/chat/completions``: no, only token counts).
        skippable: whether a run can be skipped (``when: if_loaded``).
    """

    parallel: int = 1
    streamed: bool = True
    server_timings: bool = True
    skippable: bool = False


@dataclass(frozen=True, slots=True)
class JobKey:
    """The label values of one (target, model, probe) job, and the shape of its series.

    All of them come from config. A profile change that changes the shape makes a new key, so
    a reload drops the old series and creates the new ones; the scheduler's job id (``str``)
    is the same, so the job keeps its place in time.
    """

    target: str
    model: str
    probe: str
    shape: JobShape = JobShape()

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
    timings: bool = True  # False: the wire has counts only (OpenAI ``usage``), no durations


@dataclass(frozen=True, slots=True)
class Residency:
    """One configured model as the target's ``/api/ps`` showed it; sizes in bytes.

    A model that is not loaded occupies no memory: its sizes are 0.
    """

    model: str
    loaded: bool
    size_bytes: int = 0
    vram_bytes: int = 0

    @property
    def partial_offload(self) -> bool:
        """Part of the model runs on the CPU: less of it in VRAM than its size."""
        return self.loaded and self.vram_bytes < self.size_bytes


@dataclass(frozen=True, slots=True)
class Inventory:
    """The configured models of one target as ``/api/ps`` listed them before a run.

    ``models`` is ``None`` when ``/api/ps`` could not be read: residency is unknown then,
    which is not the same as "not loaded".
    """

    target: str
    models: tuple[Residency, ...] | None

    def residency(self, model: str) -> Residency | None:
        for entry in self.models or ():
            if entry.model == model:
                return entry
        return None


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
        ttfct_ns: t_first_content - t0, the first chunk with *answer* text (thinking
            excluded); ``None`` if no answer text arrived or the answer was not streamed.
        t0_ns: the monotonic time of t0, so that streams of one run can be put side by side.
        streams: the streams of a ``parallel`` run, in the order they were started; the
            result holding them is the run's summary. Empty for a run of one stream.
        skipped: why the run sent no generation (``reason`` is then ``None``).
        inventory: the target's ``/api/ps`` as seen before the run, when it was asked.
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
    ttfct_ns: int | None = None
    t0_ns: int | None = None
    streams: tuple[ProbeResult, ...] = ()
    skipped: SkipReason | None = None
    inventory: Inventory | None = None

    def __post_init__(self) -> None:
        short = shorten(self.detail)
        if short is not self.detail:
            object.__setattr__(self, "detail", short)  # frozen: this is the one place

    @property
    def success(self) -> bool:
        """The run generated and nothing failed; a skipped run is neither success nor failure."""
        return self.reason is None and self.skipped is None

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
    def prompt_tokens(self) -> int | None:
        """The prompt's size as the server counted it (``prompt_eval_count`` or
        ``usage.prompt_tokens``); None when it reported none."""
        s = self.server
        return None if s is None or s.prompt_eval_count <= 0 else s.prompt_eval_count

    @property
    def parallel_tokens_per_second(self) -> float | None:
        """Generated tokens of all streams of a parallel run over the run's wall time.

        sum(N) / (latest t_done - earliest t0): what the server delivered to N users at once,
        connect, queueing and prefill included. None unless every stream succeeded (a failed
        stream's missing tokens would read as a slowdown).
        """
        streams = self.streams
        if not streams or not all(s.success and s.t0_ns is not None for s in streams):
            return None
        start = min(s.t0_ns for s in streams if s.t0_ns is not None)
        end = max(s.t0_ns + s.elapsed_ns for s in streams if s.t0_ns is not None)
        if end <= start:
            return None
        return sum(s.output_tokens for s in streams) * NS_PER_S / (end - start)

    @property
    def prompt_tokens_per_second(self) -> float | None:
        """prompt_eval_count / prompt_eval_duration (prefill); None when either is 0."""
        s = self.server
        if s is None or s.prompt_eval_count <= 0 or s.prompt_eval_duration_ns <= 0:
            return None
        return s.prompt_eval_count * NS_PER_S / s.prompt_eval_duration_ns
