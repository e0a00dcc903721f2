"""Every buffer is bounded by bytes: long lines, costly JSON, huge error text, floods.

The memory bounds are generous (tens of MiB) against what the unbounded prober reached
(hundreds of MiB to gigabytes), so only a real regression can break them.
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from functools import partial

import pytest

from exporter.ollama.decoding import MAX_LINE_BYTES
from exporter.result import DETAIL_MAX_BYTES, Reason
from tests.hostile.probing import (
    MIB,
    beside_healthy,
    peak_memory,
    probe,
    run_all,
    settings_for,
    two_targets,
)
from tests.hostile.remote import RemoteServers
from tests.hostile.server import (
    NDJSON,
    Handler,
    HostileServer,
    Request,
    canned,
    chunk,
    done_line,
    fixed,
    flood,
    head,
    healthy,
    text_line,
)

BLOCK = 64 * 1024
LINE_BOUND = 4 * MAX_LINE_BYTES + 8 * MIB  # the line, its copies, the socket buffer


def endless(first: bytes, block: bytes, limit_bytes: int = 10**10) -> Handler:
    """A chunked 200 that sends ``first`` then ``block`` over and over, as fast as the client
    reads, up to ``limit_bytes``."""

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, [NDJSON]) + (chunk(first) if first else b""))
        frame = chunk(block)
        for _ in range(limit_bytes // len(block)):
            writer.write(frame)
            await writer.drain()

    return handler


def ndjson(*lines: bytes) -> bytes:
    return head(200, [NDJSON]) + b"".join(chunk(x) for x in lines) + b"0\r\n\r\n"


async def test_endless_line_is_refused_at_the_cap() -> None:
    """A 100 MB line with no newline: refused once it passes the cap, memory near the cap."""
    handler = endless(b'{"response":"', b"a" * BLOCK, 100 * 10**6)
    with HostileServer(handler) as server, peak_memory() as peak:
        result = await probe(server.url)
        await server.wait_released()
    assert result.reason is Reason.INVALID_RESPONSE, result.detail
    assert "exceeds" in result.detail
    assert peak.bytes < LINE_BOUND, peak.bytes


async def test_line_of_empty_objects_is_refused_before_decoding() -> None:
    """A line just under the cap made of ``{}`` items would decode to some 25 times its size;
    its brackets are counted first, and it is refused."""
    items = b"{}," * ((MAX_LINE_BYTES - 64) // 3)
    body = b'{"done":true,"context":[' + items + b'{}],"response":""}\n'
    assert len(body) <= MAX_LINE_BYTES
    with HostileServer(canned(ndjson(text_line(), body))) as server, peak_memory() as peak:
        result = await probe(server.url)
        await server.wait_released()
    assert result.reason is Reason.INVALID_RESPONSE, result.detail
    assert "objects or arrays" in result.detail
    assert peak.bytes < LINE_BOUND, peak.bytes


async def test_big_context_under_the_cap_is_accepted() -> None:
    """A done line with a context of 500k six-digit token ids (3.5 MB) still parses: the cap
    is far above any real probe's prompt plus answer, and memory stays bounded."""
    done = done_line(context=[100_000 + i for i in range(500_000)])
    assert 3 * MIB < len(done) < MAX_LINE_BYTES
    with HostileServer(canned(ndjson(text_line(), text_line(), done))) as server:
        with peak_memory() as peak:
            result = await probe(server.url)
        await server.wait_released()
    assert result.success, result.detail
    assert peak.bytes < 16 * len(done), peak.bytes


async def test_deep_nesting_is_invalid_response_not_a_crash() -> None:
    """JSON nested deeper than the decoder's recursion limit is an invalid line."""
    deep = b"[" * 50_000 + b"]" * 50_000 + b"\n"
    with HostileServer(canned(ndjson(text_line(), deep))) as server:
        result = await probe(server.url)
        await server.wait_released()
    assert result.reason is Reason.INVALID_RESPONSE, result.detail


@pytest.mark.parametrize("size", [3 * 10**6, 30 * 10**6])
async def test_huge_error_line_is_cut_short(size: int) -> None:
    """A mid-stream ``{"error": …}`` of megabytes: under the line cap it is a stream_error,
    over it an invalid line; either way the detail is a few hundred bytes."""
    error = b'{"error":"' + b"e" * size + b'"}\n'
    with HostileServer(canned(ndjson(text_line(), error))) as server, peak_memory() as peak:
        result = await probe(server.url)
        await server.wait_released()
    expected = Reason.STREAM_ERROR if len(error) <= MAX_LINE_BYTES else Reason.INVALID_RESPONSE
    assert result.reason is expected, result.detail
    assert len(result.detail.encode()) <= DETAIL_MAX_BYTES
    if expected is Reason.STREAM_ERROR:
        assert result.detail.startswith("eee")
        assert result.detail.endswith("…")
    assert peak.bytes < LINE_BOUND, peak.bytes


async def test_eight_targets_with_huge_error_bodies() -> None:
    """Eight targets answering 500 ``{"error": "<30 MB>"}`` at once: each reads a few KiB of
    the body, keeps a detail of a few hundred bytes, and lets go of the connection."""
    body = b'{"error":"' + b"x" * (30 * 10**6) + b'"}'
    response = fixed(500, body, [("Content-Type", "application/json")])
    with ExitStack() as stack:
        servers = [stack.enter_context(HostileServer(canned(response))) for _ in range(8)]
        urls = {f"t{i}": s.url for i, s in enumerate(servers)}
        settings = settings_for(urls, timeout="10s", stall_timeout="5s")
        with peak_memory() as peak:
            results = await run_all(settings)
        for server in servers:
            await server.wait_released()
    assert [r.reason for r in results] == [Reason.HTTP_ERROR] * 8, results[0].detail
    assert all(len(r.detail.encode()) <= DETAIL_MAX_BYTES for r in results)
    assert all(r.detail.startswith("HTTP 500") for r in results)
    assert peak.bytes < 16 * MIB, peak.bytes


@pytest.mark.parametrize(
    "block",
    [b"\n" * BLOCK, b'{"done":false}\n' * (BLOCK // 15)],
    ids=["newlines", "empty-chunks"],
)
async def test_flood_of_tiny_lines_keeps_deadlines_and_others_on_time(block: bytes) -> None:
    """A server sending tiny lines as fast as the socket allows: the probe's own deadline
    still fires (no text ever came: timeout_first_token), memory stays flat, and a healthy
    target probed meanwhile through the same runner stays on schedule."""
    with RemoteServers(partial(flood, block=block), healthy) as servers:
        bad, good = servers.urls
        beside = await beside_healthy(two_targets(bad, good, timeout="1200ms"))
        await servers.wait_released()
    assert beside.hostile.reason is Reason.TIMEOUT_FIRST_TOKEN, beside.hostile.detail
    beside.assert_healthy_on_schedule()
    beside.assert_memory_flat()
