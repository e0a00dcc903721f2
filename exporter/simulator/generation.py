"""Play a validated generation request's script onto the wire: when, and in which shape.

Timing is an absolute schedule in ``time.monotonic_ns()`` from the moment generation may
start (the request's receipt, unless it waited for a load or a slot): text chunk ``i`` is
due at ``start + first_token_delay + prefill + i / rate`` (plus a stall, if scripted), so
sleep overshoot never accumulates. Nothing is written before the first chunk: the status
line and headers leave with it, as in Ollama. The shapes come from a wire format: NDJSON
for ``/api/generate`` and ``/api/chat``, SSE for ``/v1/chat/completions``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from exporter.result import NS_PER_S
from exporter.simulator import openai
from exporter.simulator.http11 import JSON_UTF8, NDJSON, TEXT_PLAIN, HttpConnection, RecordedRequest
from exporter.simulator.responses import (
    Metrics,
    context_json,
    done_body,
    done_metrics,
    dumps,
    error_body,
    load_only_body,
    text_line,
    token_text,
)
from exporter.simulator.script import Fault
from exporter.simulator.state import Admission, Busy, ModelState
from exporter.simulator.validate import Generation

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
CRASH_MESSAGE = "llama-server process has terminated: exit status 2"
MID_STREAM_MESSAGE = "an error was encountered while running the model: unexpected EOF"
SPIN_NS = 1_500_000


async def sleep_until(due_ns: int) -> None:
    """Sleep until ``time.monotonic_ns()`` reaches ``due_ns``; never return early.

    asyncio's timers wake up to 1 ms late (epoll's timeout is whole milliseconds, rounded
    up), half of the probe's 2 ms accuracy budget. So the last ``SPIN_NS`` are spent yielding
    to the loop (other streams and clients keep running) instead of in a timer: writes land
    ~0.1 ms after their due time, for at most 1.5 ms of CPU per chunk.
    """
    # A deadline on the monotonic clock, not a flag another task sets: nothing to wait on.
    while (left := due_ns - time.monotonic_ns()) > SPIN_NS:  # noqa: ASYNC110
        await asyncio.sleep((left - SPIN_NS) / NS_PER_S)
    while time.monotonic_ns() < due_ns:  # noqa: ASYNC110
        await asyncio.sleep(0)


def _ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)


class Wire(Protocol):
    """The bytes of one API's answers; the schedule and the faults are the same for all."""

    content_type: str  # of a stream
    json_type: str  # of a whole (not streamed) answer

    def text(self, index: int, unix_ns: int) -> bytes:
        """Payload of text chunk ``index`` (one HTTP chunk)."""

    def done(self, metrics: Metrics, unix_ns: int) -> bytes:
        """Payload that ends a complete stream."""

    def error_line(self) -> bytes:
        """Payload of a mid-stream runner error; the stream ends after it."""

    def malformed(self) -> bytes:
        """Payload that is not JSON."""

    def not_object(self) -> bytes:
        """Payload that is JSON but not an object."""

    def whole(self, metrics: Metrics, unix_ns: int, *, done: bool = True) -> bytes:
        """The one body of a request that does not stream."""

    def error(self, status: int, message: str) -> tuple[str, bytes]:
        """Content type and body of an error answer."""


class NativeWire:
    """Ollama's NDJSON: one compact object plus ``\\n`` per chunk (ollama-wire.md §3)."""

    content_type = NDJSON
    json_type = JSON_UTF8

    def __init__(self, gen: Generation) -> None:
        self._gen = gen

    def text(self, index: int, unix_ns: int) -> bytes:
        gen = self._gen
        return text_line(gen.endpoint, gen.model, index, gen.thinking, unix_ns)

    def done(self, metrics: Metrics, unix_ns: int) -> bytes:
        return self._done(metrics, unix_ns, "", "") + b"\n"

    def error_line(self) -> bytes:
        return error_body(MID_STREAM_MESSAGE) + b"\n"

    def malformed(self) -> bytes:
        return b'{"model":%b,"respo\n' % dumps(self._gen.model)

    def not_object(self) -> bytes:
        return b"[1,2]\n"

    def whole(self, metrics: Metrics, unix_ns: int, *, done: bool = True) -> bytes:
        thinking, content = _texts(self._gen)
        body = self._done(metrics, unix_ns, content, thinking)
        return body if done else body[: body.index(b',"done":true')] + b',"done":false}'

    def error(self, status: int, message: str) -> tuple[str, bytes]:
        return JSON_UTF8, error_body(message)

    def _done(self, metrics: Metrics, unix_ns: int, content: str, thinking: str) -> bytes:
        gen = self._gen
        context = context_json(gen.script.context_tokens) if gen.context else None
        return done_body(
            gen.endpoint,
            gen.model,
            gen.done_reason,
            done_metrics(metrics, report_counts=gen.script.report_counts),
            content=content,
            thinking=thinking,
            context=context,
            unix_ns=unix_ns,
        )


class OpenAIWire:
    """``/v1/chat/completions``: SSE frames of ``chat.completion.chunk`` objects."""

    content_type = openai.SSE
    json_type = openai.JSON

    def __init__(self, gen: Generation, received_ns: int) -> None:
        self._gen = gen
        created_s = (received_ns + time.time_ns() - time.monotonic_ns()) // NS_PER_S
        self._envelope = openai.Envelope(gen.model, created_s)

    def text(self, index: int, unix_ns: int) -> bytes:
        text = token_text(index, self._gen.thinking)
        thinking = index < self._gen.thinking
        chunk = self._envelope.chunk("" if thinking else text, text if thinking else "")
        return openai.sse(chunk)

    def done(self, metrics: Metrics, unix_ns: int) -> bytes:
        frames = [openai.sse(self._envelope.chunk("", finish_reason=self._gen.done_reason))]
        if self._gen.include_usage:
            usage = self._envelope.usage_chunk(*self._counts(metrics))
            frames.append(openai.sse(usage))
        return b"".join([*frames, openai.DONE_FRAME])

    def error_line(self) -> bytes:
        # The middleware decodes the runner's error line as an empty chat chunk [inferred].
        return openai.sse(self._envelope.chunk(""))

    def malformed(self) -> bytes:
        return b'data: {"id":"chatcmpl-1","obj\n\n'

    def not_object(self) -> bytes:
        return b"data: [1,2]\n\n"

    def whole(self, metrics: Metrics, unix_ns: int, *, done: bool = True) -> bytes:
        thinking, content = _texts(self._gen)
        reason = self._gen.done_reason if done else None
        counts = self._counts(metrics) if done else (0, 0)
        return self._envelope.completion(content, thinking, reason, *counts)

    def error(self, status: int, message: str) -> tuple[str, bytes]:
        # Errors from the native handler pass through the middleware's JSON encoder.
        return openai.JSON, openai.error_body(status, message) + b"\n"

    def _counts(self, metrics: Metrics) -> tuple[int, int]:
        if not self._gen.script.report_counts:
            return 0, 0
        return metrics.prompt_eval_count, metrics.eval_count


def wire_for(gen: Generation, received_ns: int) -> Wire:
    """Return the wire format of ``gen``'s API."""
    return OpenAIWire(gen, received_ns) if gen.api == "openai" else NativeWire(gen)


def _texts(gen: Generation) -> tuple[str, str]:
    """Return the whole thinking text and answer text of a generation."""
    texts = [token_text(i, gen.thinking) for i in range(gen.tokens)]
    return "".join(texts[: gen.thinking]), "".join(texts[gen.thinking :])


def _wall_offset() -> int:
    """Return wall-clock minus monotonic ns, to stamp ``created_at`` for a scheduled time.

    Taken once per response so that a stream's stamps never go backwards.
    """
    return time.time_ns() - time.monotonic_ns()


async def respond(
    conn: HttpConnection, gen: Generation, rec: RecordedRequest, model: ModelState
) -> None:
    """Answer a validated request according to its script: faults first, then the model.

    Every body is built before the wait, so the write after it is as prompt as possible:
    right after a sleep, building a line costs ~0.1 ms of a cold CPU.
    """
    wire = wire_for(gen, rec.received_ns)
    script = gen.script
    fault = script.fault
    if fault is Fault.BUSY:
        rec.first_write_ns = await conn.write(conn.full(503, *wire.error(503, BUSY_MESSAGE)))
    elif fault is Fault.BARE_404:
        rec.first_write_ns = await conn.write(conn.full(404, TEXT_PLAIN, b"404 page not found"))
    elif fault is Fault.HTTP_500:
        data = conn.full(500, *wire.error(500, CRASH_MESSAGE))
        await sleep_until(rec.received_ns + _ns(script.first_token_delay))
        rec.first_write_ns = await conn.write(data)
    elif fault is Fault.CLOSE_BEFORE_RESPONSE:  # no response started: the server closes
        await sleep_until(rec.received_ns + _ns(script.first_token_delay))
    elif gen.done_reason == "unload":
        model.unload()
        await _load_only(conn, gen, rec, rec.received_ns)
    else:
        try:
            async with model.use(
                script,
                received_ns=rec.received_ns,
                keep_alive=gen.keep_alive,
                slot=not gen.load_only,
            ) as admission:
                await _generate(conn, wire, gen, rec, admission)
        except Busy:
            rec.first_write_ns = await conn.write(conn.full(503, *wire.error(503, BUSY_MESSAGE)))


async def _generate(
    conn: HttpConnection, wire: Wire, gen: Generation, rec: RecordedRequest, adm: Admission
) -> None:
    if gen.load_only:
        await _load_only(conn, gen, rec, adm.start_ns)
    elif gen.stream:
        await _stream(_ChunkWriter(conn, rec, wire.content_type), wire, gen, rec, adm)
    else:
        await _whole(conn, wire, gen, rec, adm)


async def _load_only(
    conn: HttpConnection, gen: Generation, rec: RecordedRequest, start_ns: int
) -> None:
    """An empty prompt: one object once the (warm) load is done, no metrics."""
    due = start_ns + _ns(gen.script.load_duration)
    body = load_only_body(gen.endpoint, gen.model, gen.done_reason, due + _wall_offset())
    data = conn.full(200, JSON_UTF8, body)
    await sleep_until(due)
    rec.first_write_ns = rec.done_write_ns = await conn.write(data)


class _Schedule:
    """When each chunk of one answer is due (monotonic ns), stall included."""

    def __init__(self, gen: Generation, adm: Admission) -> None:
        script = gen.script
        self.first_ns = adm.start_ns + _ns(script.first_token_delay + gen.prefill_seconds)
        self.step = NS_PER_S / script.tokens_per_second
        self.last_slot = max(gen.tokens - 1, 0)
        self.fault_at = min(script.fault_after, gen.tokens) if script.fault is not None else -1
        self.stall_ns = _ns(script.stall_seconds) if script.fault is Fault.STALL else 0

    def due(self, index: int) -> int:
        """Chunk ``index``'s time; index ``tokens`` (the done chunk) shares the last slot."""
        stall = self.stall_ns if 0 <= self.fault_at <= index else 0
        return self.first_ns + round(min(index, self.last_slot) * self.step) + stall


def _metrics(gen: Generation, adm: Admission, received_ns: int, done_ns: int) -> Metrics:
    """The done chunk's numbers; total_duration never undercuts its parts."""
    script = gen.script
    eval_s = script.eval_duration
    if eval_s is None:
        eval_s = gen.tokens / script.tokens_per_second
    prompt_s = (
        gen.prefill_seconds if script.prompt_tokens_per_second else script.prompt_eval_duration
    )
    load_ns = _ns(script.load_duration) + adm.load_wait_ns
    parts = load_ns + _ns(prompt_s) + _ns(eval_s)
    return Metrics(
        total_duration=max(done_ns - received_ns, parts),
        load_duration=load_ns,
        prompt_eval_count=gen.prompt_tokens,
        prompt_eval_duration=_ns(prompt_s),
        eval_count=gen.tokens,
        eval_duration=_ns(eval_s),
    )


class _ChunkWriter:
    """Writes payloads as HTTP chunks; the first write carries the status and headers."""

    def __init__(self, conn: HttpConnection, rec: RecordedRequest, content_type: str) -> None:
        self._conn = conn
        self._rec = rec
        self._content_type = content_type
        self._head_built = False

    def _head(self) -> bytes:
        if self._head_built:
            return b""
        self._head_built = True
        return self._conn.head(200, self._content_type)

    def frame(self, payload: bytes) -> bytes:
        """Return ``payload`` as one chunk, after the status line and headers if none were sent."""
        head = self._head()
        return head + (self._conn.data(payload) if payload else self._conn.end())

    async def write(self, framed: bytes) -> int:
        """Write what ``frame`` returned; return the monotonic ns just after."""
        now = await self._conn.write(framed)
        if self._rec.first_write_ns is None:
            self._rec.first_write_ns = now
        return now

    async def send(self, payload: bytes) -> int:
        """Frame and write one payload at once (for payloads whose timing is not measured)."""
        return await self.write(self.frame(payload))

    async def end(self) -> None:
        """End the body cleanly with the zero-length chunk."""
        await self.send(b"")

    async def abort(self) -> None:
        """Drop the connection without the zero-length chunk (headers go out first if unsent)."""
        head = self._head()
        if head:
            await self.write(head)
        self._conn.abort()


async def _stream(
    out: _ChunkWriter, wire: Wire, gen: Generation, rec: RecordedRequest, adm: Admission
) -> None:
    """Write text chunks on the absolute schedule, then the done chunk with no extra delay."""
    schedule = _Schedule(gen, adm)
    wall = _wall_offset()
    for i in range(gen.tokens + 1):  # index gen.tokens is the done chunk
        due = schedule.due(i)
        if i == schedule.fault_at:
            await sleep_until(due)
            if await _inject(out, wire, gen.script.fault):
                return
        if i < gen.tokens:
            data = out.frame(wire.text(i, due + wall))
            await sleep_until(due)
            rec.text_write_ns.append(await out.write(data))
        else:
            data = out.frame(wire.done(_metrics(gen, adm, rec.received_ns, due), due + wall))
            await sleep_until(due)
            rec.done_write_ns = await out.write(data)
    await out.end()


async def _inject(out: _ChunkWriter, wire: Wire, fault: Fault | None) -> bool:
    """Act out a mid-stream fault; return True when it ends the stream."""
    if fault is Fault.MID_STREAM_ERROR:
        await out.send(wire.error_line())
        await out.end()
    elif fault is Fault.TRUNCATE:
        await out.abort()
    elif fault is Fault.END_WITHOUT_DONE:
        await out.end()
    elif fault is Fault.MALFORMED:
        await out.send(wire.malformed())
    elif fault is Fault.NOT_JSON_OBJECT:
        await out.send(wire.not_object())
    return fault in (Fault.MID_STREAM_ERROR, Fault.TRUNCATE, Fault.END_WITHOUT_DONE)


async def _whole(
    conn: HttpConnection, wire: Wire, gen: Generation, rec: RecordedRequest, adm: Admission
) -> None:
    """``stream: false``: one object once the last token would have been generated."""
    fault = gen.script.fault
    due = _Schedule(gen, adm).due(gen.tokens)
    metrics = _metrics(gen, adm, rec.received_ns, due)
    status, ctype = 200, wire.json_type
    if fault is Fault.MID_STREAM_ERROR:
        status = 500
        ctype, body = wire.error(500, MID_STREAM_MESSAGE)
    elif fault is Fault.MALFORMED:
        body = wire.malformed().removeprefix(b"data: ").rstrip(b"\n")
    elif fault is Fault.NOT_JSON_OBJECT:
        body = wire.not_object().removeprefix(b"data: ").rstrip(b"\n")
    else:
        body = wire.whole(metrics, due + _wall_offset(), done=fault is not Fault.END_WITHOUT_DONE)
    data = conn.full(status, ctype, body)
    await sleep_until(due)
    if fault is Fault.TRUNCATE:  # a Content-Length body cut in half
        rec.first_write_ns = await conn.write(data[: len(data) - len(body) // 2])
        conn.abort()
        return
    rec.first_write_ns = rec.done_write_ns = await conn.write(data)
