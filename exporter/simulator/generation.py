"""``/api/generate`` and ``/api/chat``: play a validated request's script onto the wire.

Timing is an absolute schedule in ``time.monotonic_ns()`` from the moment the request was
received: text chunk ``i`` is due at ``received + first_token_delay + i / rate`` (plus a
stall, if scripted), so sleep overshoot never accumulates. Nothing is written before the
first chunk: the status line and headers leave with it, as in Ollama.
"""

from __future__ import annotations

import asyncio
import time

from exporter.simulator.http11 import JSON_UTF8, NDJSON, TEXT_PLAIN, HttpConnection, RecordedRequest
from exporter.simulator.responses import (
    NS_PER_S,
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


def _wall_offset() -> int:
    """Return wall-clock minus monotonic ns, to stamp ``created_at`` for a scheduled time.

    Taken once per response so that a stream's stamps never go backwards.
    """
    return time.time_ns() - time.monotonic_ns()


async def respond(conn: HttpConnection, gen: Generation, rec: RecordedRequest) -> None:
    """Answer a validated request according to its script (faults first).

    Every body is built before the wait, so the write after it is as prompt as possible:
    right after a sleep, building a line costs ~0.1 ms of a cold CPU.
    """
    script = gen.script
    fault = script.fault
    if fault in (Fault.BUSY, Fault.BARE_404):
        status, ctype, body = (
            (503, JSON_UTF8, error_body(BUSY_MESSAGE))
            if fault is Fault.BUSY
            else (404, TEXT_PLAIN, b"404 page not found")
        )
        rec.first_write_ns = await conn.write(conn.full(status, ctype, body))
    elif fault is Fault.HTTP_500:
        data = conn.full(500, JSON_UTF8, error_body(CRASH_MESSAGE))
        await sleep_until(rec.received_ns + _ns(script.first_token_delay))
        rec.first_write_ns = await conn.write(data)
    elif fault is Fault.CLOSE_BEFORE_RESPONSE:  # nothing written: the server closes
        await sleep_until(rec.received_ns + _ns(script.first_token_delay))
    elif gen.load_only:
        due = rec.received_ns + _ns(script.load_duration)
        body = load_only_body(gen.endpoint, gen.model, gen.done_reason, due + _wall_offset())
        data = conn.full(200, JSON_UTF8, body)
        await sleep_until(due)
        rec.first_write_ns = rec.done_write_ns = await conn.write(data)
    elif gen.stream:
        await _stream(_ChunkWriter(conn, rec), gen, rec)
    else:
        await _whole(conn, gen, rec)


class _ChunkWriter:
    """Writes NDJSON lines as HTTP chunks; the first write carries the status and headers."""

    def __init__(self, conn: HttpConnection, rec: RecordedRequest) -> None:
        self._conn = conn
        self._rec = rec
        self._head_built = False

    def _head(self) -> bytes:
        if self._head_built:
            return b""
        self._head_built = True
        return self._conn.head(200, NDJSON)

    def frame(self, line: bytes) -> bytes:
        """Return ``line`` as one chunk, after the status line and headers if none were sent."""
        head = self._head()
        return head + (self._conn.data(line) if line else self._conn.end())

    async def write(self, framed: bytes) -> int:
        """Write what ``frame`` returned; return the monotonic ns just after."""
        now = await self._conn.write(framed)
        if self._rec.first_write_ns is None:
            self._rec.first_write_ns = now
        return now

    async def send(self, line: bytes) -> int:
        """Frame and write one line at once (for lines whose timing is not measured)."""
        return await self.write(self.frame(line))

    async def end(self) -> None:
        """End the body cleanly with the zero-length chunk."""
        await self.send(b"")

    async def abort(self) -> None:
        """Drop the connection without the zero-length chunk (headers go out first if unsent)."""
        head = self._head()
        if head:
            await self.write(head)
        self._conn.abort()


async def _stream(out: _ChunkWriter, gen: Generation, rec: RecordedRequest) -> None:
    """Write text chunks on the absolute schedule, then the done chunk with no extra delay."""
    script = gen.script
    t_first = rec.received_ns + _ns(script.first_token_delay)
    step = NS_PER_S / script.tokens_per_second
    fault_at = min(script.fault_after, gen.tokens) if script.fault is not None else -1
    stall = _ns(script.stall_seconds) if script.fault is Fault.STALL else 0
    wall = _wall_offset()
    for i in range(gen.tokens + 1):  # index gen.tokens is the done chunk
        slot = min(i, max(gen.tokens - 1, 0))
        due = t_first + round(slot * step) + (stall if 0 <= fault_at <= i else 0)
        if i == fault_at:
            await sleep_until(due)
            if await _inject(out, gen):
                return
        if i < gen.tokens:
            data = out.frame(text_line(gen.endpoint, gen.model, i, gen.thinking, due + wall))
            await sleep_until(due)
            rec.text_write_ns.append(await out.write(data))
        else:
            data = out.frame(_done(gen, rec.received_ns, due, wall) + b"\n")
            await sleep_until(due)
            rec.done_write_ns = await out.write(data)
    await out.end()


async def _inject(out: _ChunkWriter, gen: Generation) -> bool:
    """Act out a mid-stream fault; return True when it ends the stream."""
    fault = gen.script.fault
    if fault is Fault.MID_STREAM_ERROR:
        await out.send(error_body(MID_STREAM_MESSAGE) + b"\n")
        await out.end()
    elif fault is Fault.TRUNCATE:
        await out.abort()
    elif fault is Fault.END_WITHOUT_DONE:
        await out.end()
    elif fault is Fault.MALFORMED:
        await out.send(_malformed(gen.model) + b"\n")
    elif fault is Fault.NOT_JSON_OBJECT:
        await out.send(b"[1,2]\n")
    return fault in (Fault.MID_STREAM_ERROR, Fault.TRUNCATE, Fault.END_WITHOUT_DONE)


def _malformed(model: str) -> bytes:
    return b'{"model":%b,"respo' % dumps(model)


def _done(
    gen: Generation,
    received_ns: int,
    due_ns: int,
    wall_offset: int,
    *,
    content: str = "",
    thinking: str = "",
) -> bytes:
    """Build the done object due at ``due_ns``; total_duration never undercuts its parts."""
    script = gen.script
    eval_s = script.eval_duration
    if eval_s is None:
        eval_s = gen.tokens / script.tokens_per_second
    parts = _ns(script.load_duration) + _ns(script.prompt_eval_duration) + _ns(eval_s)
    metrics = done_metrics(script, gen.tokens, max(due_ns - received_ns, parts))
    context = context_json(script.context_tokens) if gen.context else None
    return done_body(
        gen.endpoint,
        gen.model,
        gen.done_reason,
        metrics,
        content=content,
        thinking=thinking,
        context=context,
        unix_ns=due_ns + wall_offset,
    )


async def _whole(conn: HttpConnection, gen: Generation, rec: RecordedRequest) -> None:
    """``stream: false``: one object once the last token would have been generated."""
    script = gen.script
    step = NS_PER_S / script.tokens_per_second
    stall = _ns(script.stall_seconds) if script.fault is Fault.STALL else 0
    last = round(max(gen.tokens - 1, 0) * step)
    due = rec.received_ns + _ns(script.first_token_delay) + last + stall
    texts = [token_text(i, gen.thinking) for i in range(gen.tokens)]
    thinking, content = "".join(texts[: gen.thinking]), "".join(texts[gen.thinking :])
    status, body = (
        200,
        _done(gen, rec.received_ns, due, _wall_offset(), content=content, thinking=thinking),
    )
    if script.fault is Fault.MID_STREAM_ERROR:
        status, body = 500, error_body(MID_STREAM_MESSAGE)
    elif script.fault is Fault.END_WITHOUT_DONE:
        body = body[: body.index(b',"done":true')] + b',"done":false}'
    elif script.fault is Fault.MALFORMED:
        body = _malformed(gen.model)
    elif script.fault is Fault.NOT_JSON_OBJECT:
        body = b"[1,2]"
    data = conn.full(status, JSON_UTF8, body)
    await sleep_until(due)
    if script.fault is Fault.TRUNCATE:  # a Content-Length body cut in half
        rec.first_write_ns = await conn.write(data[: len(data) - len(body) // 2])
        conn.abort()
        return
    rec.first_write_ns = rec.done_write_ns = await conn.write(data)
