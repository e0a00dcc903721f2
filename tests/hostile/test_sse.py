"""What a server's bytes can do to the OpenAI decoder (``api: openai``), and the reason each
earns; the limits of Ollama's wire hold for server-sent events too (line cap, costly JSON,
compressed bodies, floods)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest

from exporter.ollama.decoding import MAX_LINE_BYTES
from exporter.result import Reason
from tests.hostile.probing import (
    MIB,
    beside_healthy,
    peak_memory,
    probe,
    probe_hostile,
    two_targets,
)
from tests.hostile.remote import RemoteServers
from tests.hostile.server import (
    SSE,
    SSE_DONE,
    SSE_USAGE,
    HostileServer,
    Request,
    canned,
    chunk,
    flood,
    head,
    healthy,
    sse_event,
    sse_text,
)

LINE_BOUND = 4 * MAX_LINE_BYTES + 8 * MIB
event, text, USAGE, DONE = sse_event, sse_text, SSE_USAGE, SSE_DONE


def sse(*frames: bytes, headers: tuple[tuple[str, str], ...] = (SSE,)) -> bytes:
    return head(200, headers) + b"".join(chunk(f) for f in frames) + b"0\r\n\r\n"


async def openai_probe(server: HostileServer, **profile: Any) -> Any:
    return await probe_hostile(server, api="openai", **profile)


async def test_healthy_stream() -> None:
    """The harness itself: three texts, usage, [DONE] is a success with N from usage."""
    with HostileServer(canned(sse(text(), text(), text(), USAGE, DONE))) as server:
        result = await openai_probe(server)
    assert result.success, result.detail
    assert result.output_tokens == 3


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([text(), event({"error": {"message": "CUDA out of memory", "code": 500}}), DONE],
         Reason.STREAM_ERROR),
        ([text(), event({"object": "error", "message": "engine dead", "code": 500})],
         Reason.STREAM_ERROR),
        ([text(), text(), DONE], Reason.TRUNCATED),
        ([text(), text(), USAGE], Reason.TRUNCATED),
        ([text(), b"<html>502 Bad Gateway</html>\n\n"], Reason.INVALID_RESPONSE),
        ([text(), b"data: {\"choices\": 7}\n\n"], Reason.INVALID_RESPONSE),
        ([text(), b"data: " + b"[" * 50_000 + b"]" * 50_000 + b"\n\n"], Reason.INVALID_RESPONSE),
        ([text(), event({"choices": [], "usage": {"completion_tokens": 10**30}}), DONE],
         Reason.INVALID_RESPONSE),
        ([USAGE, DONE], Reason.EMPTY_RESPONSE),
    ],
)  # fmt: skip
async def test_bad_streams(frames: list[bytes], reason: Reason) -> None:
    """An error object (OpenAI's or vLLM's shape), a stream without [DONE] or usage, bytes
    that are not events, absurd counts, and an answer with no text: one reason each."""
    with HostileServer(canned(sse(*frames))) as server:
        result = await openai_probe(server)
    assert result.reason is reason, result.detail


async def test_compressed_stream_is_refused_not_decoded() -> None:
    """A gzip-encoded event stream is refused unread, like a compressed NDJSON stream."""
    response = sse(text(), headers=(SSE, ("Content-Encoding", "gzip")))
    with HostileServer(canned(response)) as server:
        result = await openai_probe(server)
    assert result.reason is Reason.INVALID_RESPONSE
    assert "gzip" in result.detail


async def test_endless_data_line_is_refused_at_the_cap() -> None:
    """A data line that never ends: refused once it passes the cap, memory near the cap."""

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, [SSE]) + chunk(b'data: {"choices":[{"delta":{"content":"'))
        frame = chunk(b"a" * 65536)
        for _ in range(100 * 10**6 // 65536):
            writer.write(frame)
            await writer.drain()

    with HostileServer(handler) as server, peak_memory() as peak:
        result = await probe(server.url, api="openai")
        await server.wait_released()
    assert result.reason is Reason.INVALID_RESPONSE, result.detail
    assert "exceeds" in result.detail
    assert peak.bytes < LINE_BOUND, peak.bytes


async def test_flood_of_comments_keeps_deadlines_and_others_on_time() -> None:
    """Keep-alive comments as fast as the socket allows carry no event: the probe's deadline
    fires (no text: timeout_first_token), memory stays flat, a healthy target stays on time."""
    block = b": ping\n\n" * 8192
    with RemoteServers(partial(flood, block=block), healthy) as servers:
        bad, good = servers.urls
        beside = await beside_healthy(two_targets(bad, good, timeout="1200ms", api="openai"))
        await servers.wait_released()
    assert beside.hostile.reason is Reason.TIMEOUT_FIRST_TOKEN, beside.hostile.detail
    beside.assert_healthy_on_schedule()
    beside.assert_memory_flat()
