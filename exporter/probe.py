"""Run one streaming probe and turn whatever happens into exactly one ProbeResult.

The prober never raises for anything the server does: a refused connection, a 404, a stall,
a malformed line or a connection dropped mid-stream each end as one ``Reason``. Deadlines:

- ``timeout`` is a hard limit on the whole exchange from ``t0`` (a cold load included);
- ``stall_timeout`` limits the gap after each chunk, once the first chunk has arrived.

Both are one ``asyncio.timeout`` rescheduled after every read, so which limit fired is known:
before any text it is ``timeout_first_token``, a gap is ``timeout_stall``, and the overall
limit after text began is ``timeout_total``. Each read is timestamped before it is parsed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from exporter.clock import Clock
from exporter.config import JobSpec
from exporter.ollama.errors import ERROR_BODY_LIMIT, classify_status
from exporter.ollama.payload import API_PATHS, encode, new_nonce, request_body
from exporter.ollama.stream import MAX_LINE_BYTES, InvalidLine, LineSplitter, parse_chunk
from exporter.result import ProbeResult, Reason
from exporter.timeline import Timeline


class StreamingResponse(Protocol):
    """A response whose body arrives read by read (``exporter.ollama.client.StreamResponse``)."""

    @property
    def status(self) -> int: ...

    @property
    def connect_started_ns(self) -> int | None: ...

    def arrival_ns(self) -> int | None: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def read_limited(self, limit: int) -> bytes: ...


class ProbeClient(Protocol):
    """What the prober needs from an HTTP client (``exporter.ollama.client.OllamaClient``).

    ``prepare`` returns an opaque request that ``open_stream`` accepts, so the body is
    encoded before ``t0``.
    """

    def prepare(self, path: str, body: bytes) -> Any: ...

    def open_stream(self, prepared: Any) -> AbstractAsyncContextManager[StreamingResponse]: ...

    def classify(self, exc: BaseException) -> tuple[Reason, str]: ...


class _Probe:
    """The state of one probe in flight; ``run_probe`` is its only user."""

    def __init__(self, spec: JobSpec, clock: Clock, max_line_bytes: int) -> None:
        self.spec = spec
        self.clock = clock
        self.max_line_bytes = max_line_bytes
        self.timeline = Timeline(t0_ns=0)
        self.stall_armed = False

    def fail(self, reason: Reason, detail: str) -> ProbeResult:
        return self.timeline.failure(
            self.spec.key, self.clock.time(), reason, detail, self.clock.monotonic_ns()
        )

    async def exchange(
        self, client: ProbeClient, prepared: Any, limit: asyncio.Timeout
    ) -> ProbeResult:
        loop = asyncio.get_running_loop()
        deadline = limit.when()
        assert deadline is not None
        stall_s = self.spec.profile.stall_timeout
        async with client.open_stream(prepared) as response:
            # The transport's own stamps are closer to the wire than ours: t0 at connect
            # start, arrivals when the socket read returned (before HTTP parsing).
            if response.connect_started_ns is not None:
                self.timeline.t0_ns = response.connect_started_ns
            self.timeline.http_status = response.status
            if not 200 <= response.status < 300:
                body = await response.read_limited(ERROR_BODY_LIMIT)
                return self.fail(*classify_status(response.status, body))
            splitter = LineSplitter(self.max_line_bytes)
            t_ns = self.clock.monotonic_ns()
            async for data in response.chunks():
                t_ns = response.arrival_ns() or self.clock.monotonic_ns()
                for line in splitter.feed(data):
                    result = self.take_line(line, t_ns)
                    if result is not None:
                        return result
                if self.timeline.chunks:
                    stall_at = loop.time() + stall_s
                    self.stall_armed = stall_at < deadline
                    limit.reschedule(min(stall_at, deadline))
            return self.at_eof(splitter.tail(), t_ns)

    def take_line(self, line: bytes, t_ns: int) -> ProbeResult | None:
        """Apply one line; a result ends the probe (done, or an error line)."""
        chunk = parse_chunk(line)
        if chunk is None:
            return None
        if chunk.error is not None:
            return self.fail(Reason.STREAM_ERROR, chunk.error)
        self.timeline.observe(chunk, t_ns)
        if chunk.done:
            return self.timeline.success(self.spec.key, self.clock.time())
        return None

    def at_eof(self, tail: bytes, t_ns: int) -> ProbeResult:
        """The body ended before ``done: true``; a last line without its newline still counts
        (it arrived with the last read, at ``t_ns``)."""
        if tail.strip():
            try:
                result = self.take_line(tail, t_ns)
            except InvalidLine:
                result = None
            if result is not None:
                return result
        detail = f"stream ended without done after {self.timeline.chunks} chunks"
        return self.fail(Reason.TRUNCATED, detail)

    def timeout_reason(self) -> tuple[Reason, str]:
        profile = self.spec.profile
        if self.stall_armed:
            return Reason.TIMEOUT_STALL, f"no chunk for {profile.stall_timeout:g} s (stall_timeout)"
        if self.timeline.first_text_ns is None:
            return Reason.TIMEOUT_FIRST_TOKEN, f"no token within {profile.timeout:g} s (timeout)"
        return Reason.TIMEOUT_TOTAL, f"stream not done within {profile.timeout:g} s (timeout)"


async def run_probe(
    client: ProbeClient,
    spec: JobSpec,
    clock: Clock,
    *,
    nonce: str | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ProbeResult:
    """Send one streaming generation for ``spec`` and measure it; never raises for I/O."""
    probe = _Probe(spec, clock, max_line_bytes)
    body = encode(request_body(spec.profile, spec.model, nonce or new_nonce()))
    prepared = client.prepare(API_PATHS[spec.profile.api], body)
    loop = asyncio.get_running_loop()
    probe.timeline.t0_ns = clock.monotonic_ns()
    try:
        async with asyncio.timeout_at(loop.time() + spec.profile.timeout) as limit:
            return await probe.exchange(client, prepared, limit)
    except TimeoutError:
        return probe.fail(*probe.timeout_reason())
    except InvalidLine as err:
        return probe.fail(Reason.INVALID_RESPONSE, str(err))
    except Exception as err:  # every transport failure becomes a reason, never a crash
        return probe.fail(*client.classify(err))
