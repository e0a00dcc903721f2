"""Run one probe (one generation) and turn whatever happens into exactly one ProbeResult.

The prober never raises for anything the server does: a refused connection, a 404, a stall,
a malformed line or a connection dropped mid-stream each end as one ``Reason``. It knows no
wire format: the profile's decoder (``exporter.ollama.payload.decoder_for``) turns the body
into events, and the timeline turns stamped events into the result. Deadlines:

- ``timeout`` is a hard limit on the whole exchange from ``t0`` (a cold load included);
- ``stall_timeout`` limits the gap after each chunk, once the first chunk has arrived.

Both end the exchange through one ``asyncio.timeout``, so which limit fired is known: before
any text it is ``timeout_first_token``, a gap is ``timeout_stall``, and the overall limit
after text began is ``timeout_total``. The stall limit is a watchdog (``_StallWatch``) that
wakes once per ``stall_timeout`` rather than a timer moved at every read: a read only notes
its time. The per-read path stays cheap and in this order: take the arrival stamp, then
split and parse.

Nothing the server sends is held without a bound: a compressed body is refused rather than
decoded, an error body is read up to ``ERROR_BODY_LIMIT``, a line up to ``MAX_LINE_BYTES``,
and the detail of a failure is cut short where the ProbeResult is built. A server may quote
the request's headers back, so the detail is also scrubbed of the target's header values.
"""

from __future__ import annotations

import asyncio
import dataclasses

from exporter.clock import Clock
from exporter.config import JobSpec
from exporter.ollama.client import (
    OllamaClient,
    PreparedRequest,
    StreamResponse,
    TransportFailure,
)
from exporter.ollama.decoding import Chunk, Decoder, EndedEarly, InvalidLine
from exporter.ollama.errors import ERROR_BODY_LIMIT, classify_status
from exporter.ollama.network import WireLog
from exporter.ollama.payload import API_PATHS, decoder_for, encode, request_body
from exporter.ollama.prompt import new_nonce
from exporter.result import ProbeResult, Reason, redact
from exporter.timeline import Timeline

# Lines parsed between two passes of the event loop. A read brings up to 64 KiB, thousands
# of tiny lines from a flooding server; handing the loop back every few dozen keeps every
# other probe and every deadline on time. An Ollama stream brings one line per read.
LINES_PER_PASS = 64


class _StallWatch:
    """Ends the exchange when no read came for ``stall_s``, once the first chunk is in.

    Rescheduling the timeout after every read cost a timer cancelled and one created per
    chunk (and a heap of cancelled timers); here a read stores its time, and one timer per
    ``stall_s`` checks it, re-arming itself for the last read's limit. A limit at or past
    the overall deadline is left to that deadline (``timeout_total``), as before.
    """

    def __init__(self, limit: asyncio.Timeout, stall_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._limit = limit
        deadline = limit.when()
        assert deadline is not None
        self._deadline = deadline
        self._stall_s = stall_s
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.fired = False

    def fed(self, now: float) -> None:
        """A read arrived at loop time ``now``."""
        self._last = now
        if self._timer is None:
            self._arm(now + self._stall_s)

    def _arm(self, when: float) -> None:
        if when < self._deadline:
            self._timer = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        due = self._last + self._stall_s
        if self._loop.time() < due:
            self._arm(due)  # a read came meanwhile: wait for its limit
            return
        self.fired = True
        self._limit.reschedule(self._loop.time())  # the exchange ends with TimeoutError

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class _Probe:
    """The state of one probe in flight; ``run_probe`` is its only user."""

    def __init__(self, spec: JobSpec, clock: Clock) -> None:
        self.spec = spec
        self.clock = clock
        self.timeline = Timeline(streamed=spec.profile.stream)
        self.wire = WireLog()
        self.sent_ns = clock.monotonic_ns()
        self.stall: _StallWatch | None = None

    def t0_ns(self) -> int:
        """When the connection started, as the transport stamped it; else when we sent."""
        started = self.wire.connect_started_ns
        return self.sent_ns if started is None else started

    def fail(self, reason: Reason, detail: str) -> ProbeResult:
        return self.timeline.failure(
            self.spec.key,
            reason,
            detail,
            t0_ns=self.t0_ns(),
            t_ns=self.clock.monotonic_ns(),
            finished_at=self.clock.time(),
        )

    async def exchange(
        self, client: OllamaClient, prepared: PreparedRequest, limit: asyncio.Timeout
    ) -> ProbeResult:
        async with client.open_stream(prepared, self.wire) as response:
            self.timeline.http_status = response.status
            encoding = response.refused_encoding
            if encoding is not None:
                return self.fail(
                    Reason.INVALID_RESPONSE,
                    f"HTTP {response.status} with Content-Encoding {encoding!r} (identity was "
                    "asked for; compressed bodies are never decoded)",
                )
            if not 200 <= response.status < 300:
                body = await response.read_limited(ERROR_BODY_LIMIT)
                return self.fail(*classify_status(response.status, body))
            return await self.read_stream(response, limit)

    async def read_stream(self, response: StreamResponse, limit: asyncio.Timeout) -> ProbeResult:
        loop = asyncio.get_running_loop()
        self.stall = stall = _StallWatch(limit, self.spec.profile.stall_timeout)
        decoder = decoder_for(self.spec.profile)
        timeline = self.timeline
        wire = self.wire
        t_ns = self.clock.monotonic_ns()
        try:
            async for data in response.chunks():
                # The transport stamped the socket read behind these bytes, before parsing.
                t_ns = wire.last_arrival_ns or self.clock.monotonic_ns()
                for n, chunk in enumerate(decoder.feed(data), start=1):
                    if chunk is not None:
                        result = self.take(chunk, t_ns)
                        if result is not None:
                            return result
                    if n % LINES_PER_PASS == 0:
                        await asyncio.sleep(0)
                if timeline.chunks:
                    stall.fed(loop.time())
            return self.at_eof(decoder, t_ns)
        finally:
            stall.cancel()

    def take(self, chunk: Chunk | None, t_ns: int) -> ProbeResult | None:
        """Apply one event; a result ends the probe (done, or an error)."""
        if chunk is None:
            return None
        if chunk.error is not None:
            return self.fail(Reason.STREAM_ERROR, chunk.error)
        self.timeline.observe(chunk, t_ns)
        if chunk.done:
            return self.timeline.success(
                self.spec.key, t0_ns=self.t0_ns(), finished_at=self.clock.time()
            )
        return None

    def at_eof(self, decoder: Decoder, t_ns: int) -> ProbeResult:
        """The body ended: what the decoder still holds arrived with the last read, at
        ``t_ns`` (a whole answer, or a last line without its newline)."""
        for chunk in decoder.finish():
            result = self.take(chunk, t_ns)
            if result is not None:
                return result
        detail = f"stream ended without done after {self.timeline.chunks} chunks"
        return self.fail(Reason.TRUNCATED, detail)

    def timeout_reason(self) -> tuple[Reason, str]:
        profile = self.spec.profile
        if self.stall is not None and self.stall.fired:
            return Reason.TIMEOUT_STALL, f"no chunk for {profile.stall_timeout:g} s (stall_timeout)"
        if self.timeline.first_text_ns is None:
            return Reason.TIMEOUT_FIRST_TOKEN, f"no token within {profile.timeout:g} s (timeout)"
        return Reason.TIMEOUT_TOTAL, f"stream not done within {profile.timeout:g} s (timeout)"


async def run_probe(client: OllamaClient, spec: JobSpec, clock: Clock) -> ProbeResult:
    """Send one generation for ``spec`` and measure it; never raises for I/O.

    The detail is scrubbed of the target's header values here, where it is made, so that
    every stream of a parallel run and everything built from them is clean.
    """
    result = await _measure(client, spec, clock)
    detail = redact(result.detail, spec.target.header_values().values())
    return result if detail == result.detail else dataclasses.replace(result, detail=detail)


async def _measure(client: OllamaClient, spec: JobSpec, clock: Clock) -> ProbeResult:
    """One generation and its result.

    A ``MemoryError`` can only come from a response too large to hold (every buffer is
    bounded, but a host can be short of memory): it is ``invalid_response``, like any other
    exception the HTTP stack raises that names no transport failure.
    """
    body = encode(request_body(spec.profile, spec.model, new_nonce()))
    prepared = client.prepare(API_PATHS[spec.profile.api], body)
    loop = asyncio.get_running_loop()
    probe = _Probe(spec, clock)  # stamps the fallback t0: now
    try:
        async with asyncio.timeout_at(loop.time() + spec.profile.timeout) as limit:
            return await probe.exchange(client, prepared, limit)
    except TimeoutError:
        return probe.fail(*probe.timeout_reason())
    except (InvalidLine, EndedEarly) as err:  # bad bytes; or well-formed, but no final counts
        reason = Reason.TRUNCATED if isinstance(err, EndedEarly) else Reason.INVALID_RESPONSE
        return probe.fail(reason, str(err))
    except TransportFailure as err:
        return probe.fail(err.reason, err.detail)
    except MemoryError:
        return probe.fail(Reason.INVALID_RESPONSE, "response too large to hold in memory")
    except Exception as err:  # whatever else the server provokes is a reason, never a crash
        return probe.fail(Reason.INVALID_RESPONSE, f"unexpected {type(err).__name__}: {err}")
