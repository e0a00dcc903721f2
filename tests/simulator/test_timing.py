"""Timing tests: withheld headers, the absolute decode schedule, big lines and prompt close.

Tolerances come from the script (5 ms before the first write; for a stream, half a decode step
and a 1.2 % rate error, judged on the least late writes) and are no tighter, so they hold on a
loaded 2-core machine. Scripts are short (tens of ms) so the folder stays fast; the schedule
is absolute, so a short one is as telling as a long one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time

import httpx
import pytest

from exporter.simulator import Fault, ModelScript, OllamaSimulator
from tests.simulator.clients import http_client

MS = 1_000_000
REQUEST = (
    b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%b"
)


def raw_request(body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode()
    return REQUEST % (len(data), data)


class TestFirstChunk:
    async def test_headers_are_withheld_until_the_first_chunk(self) -> None:
        """No byte, not even the status line, arrives before first_token_delay."""
        script = ModelScript(first_token_delay=0.1, tokens=3)
        async with OllamaSimulator({"m": script}) as sim:
            reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
            writer.write(raw_request({"model": "m", "prompt": "hi"}))
            await writer.drain()
            sent = time.monotonic_ns()
            first = await asyncio.wait_for(reader.read(65536), timeout=5)
            arrived = time.monotonic_ns()
            writer.close()
            await writer.wait_closed()
        assert arrived - sent >= 100 * MS - 5 * MS
        assert first.startswith(b"HTTP/1.1 200 OK\r\n")
        rec = sim.requests[0]
        # Status line, headers and the first chunk went out in one write.
        assert rec.first_write_ns == rec.text_write_ns[0]

    async def test_schedule_of_text_chunks(self) -> None:
        """The first write is first_token_delay after receipt; chunks are 1/rate apart."""
        # The schedule is deterministic; only OS wake-up latency varies, and it only ever
        # makes a write late. So a stretch of the stream is judged by its least late write,
        # which a loaded machine moves only by delaying every write of the stretch (one late
        # wake-up makes the next few writes late too, enough to move a median by 3 ms): no
        # write is early, the floor does not rise along the stream (a rate 1.2 % off, or a
        # schedule that accumulates its own lateness, raises it over 3 ms from the first third
        # to the last), and it is within half a step of the schedule (a wrong start is further).
        runs = [await run_schedule(first_token_delay=0.03, rate=100.0, tokens=40) for _ in range(3)]
        assert min(min(lateness) for lateness in runs) >= -MS
        drift = statistics.median(min(late[-13:]) - min(late[:13]) for late in runs)
        assert abs(drift) < 3 * MS
        assert statistics.median(min(late) for late in runs) < 5 * MS


async def run_schedule(first_token_delay: float, rate: float, tokens: int) -> list[int]:
    """Stream one generation; return each text chunk's lateness against its schedule (ns)."""
    script = ModelScript(first_token_delay=first_token_delay, tokens_per_second=rate, tokens=tokens)
    async with OllamaSimulator({"m": script}) as sim, http_client() as client:
        body = {"model": "m", "prompt": "hi"}
        async with client.stream("POST", f"{sim.url}/api/generate", json=body) as response:
            raw = b"".join([piece async for piece in response.aiter_bytes()])
    assert raw.count(b"\n") == tokens + 1
    rec = sim.requests[0]
    writes = rec.text_write_ns
    assert len(writes) == tokens
    assert rec.first_write_ns == writes[0]
    assert rec.done_write_ns is not None
    assert rec.done_write_ns >= writes[-1]
    due = [rec.received_ns + round((first_token_delay + i / rate) * 1e9) for i in range(tokens)]
    return [write - when for write, when in zip(writes, due, strict=True)]


class TestBigDoneLine:
    async def test_context_of_300k_tokens(self) -> None:
        """context_tokens=300_000 makes a done line over 1 MiB that is still valid JSON."""
        script = ModelScript(first_token_delay=0.0, tokens=2, context_tokens=300_000)
        async with OllamaSimulator({"m": script}) as sim, http_client() as client:
            body = {"model": "m", "prompt": "hi"}
            async with client.stream("POST", f"{sim.url}/api/generate", json=body) as response:
                raw = b"".join([piece async for piece in response.aiter_bytes()])
        done_line = raw.split(b"\n")[-2]
        assert len(done_line) > 1024 * 1024
        done = json.loads(done_line)
        assert len(done["context"]) == 300_000
        assert done["eval_count"] == 2


class TestClose:
    async def test_close_aborts_a_stalled_stream(self) -> None:
        """close() returns promptly even while a stream is stalled for a long time."""
        script = ModelScript(
            first_token_delay=0.0, tokens=10, fault=Fault.STALL, fault_after=2, stall_seconds=60
        )
        sim = OllamaSimulator({"m": script})
        await sim.start()
        stalled = asyncio.Event()

        async def read_all() -> bytes:
            received = b""
            body = {"model": "m", "prompt": "hi"}
            async with (
                http_client() as client,
                client.stream("POST", f"{sim.url}/api/generate", json=body) as response,
            ):
                async for piece in response.aiter_bytes():
                    received += piece
                    if received.count(b"\n") >= 2:
                        stalled.set()
            return received

        reader = asyncio.create_task(read_all())
        try:
            await asyncio.wait_for(stalled.wait(), timeout=5)
            started = time.monotonic()
            await sim.close()
            assert time.monotonic() - started < 2.0
            with pytest.raises(httpx.RemoteProtocolError):
                await asyncio.wait_for(reader, timeout=2)
        finally:
            reader.cancel()
            await sim.close()

    async def test_close_aborts_a_write_to_a_client_that_does_not_read(self) -> None:
        """close() returns promptly while a multi-MB done line waits for a client that never reads."""
        script = ModelScript(first_token_delay=0.0, tokens=1, context_tokens=1_000_000)
        sim = OllamaSimulator({"m": script})
        await sim.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        try:
            writer.write(raw_request({"model": "m", "prompt": "hi"}))
            await writer.drain()
            await asyncio.wait_for(reader.readexactly(1), timeout=5)  # the stream has started
            started = time.monotonic()
            await sim.close()
            assert time.monotonic() - started < 2.0
            assert sim.requests[0].done_write_ns is None  # ~7 MB never fit in the buffers
            received = 1  # the byte read above
            with contextlib.suppress(ConnectionResetError):
                while data := await asyncio.wait_for(reader.read(1 << 20), timeout=5):
                    received += len(data)
            # Aborted: what the kernel buffers held (~4 MB here) arrives, the rest is dropped.
            assert received < 7_000_000
        finally:
            writer.close()
            await sim.close()
