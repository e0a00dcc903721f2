"""Slow, dripping, stalling and hanging servers: the right deadline fires, and a healthy
target probed meanwhile through the same runner stays on schedule."""

from __future__ import annotations

import asyncio

from exporter.result import NS_PER_S, Reason
from tests.hostile.probing import beside_healthy, probe_hostile, run_all, settings_for, two_targets
from tests.hostile.remote import RemoteServers
from tests.hostile.server import (
    HEALTHY_STREAM,
    NDJSON,
    HostileServer,
    Request,
    chunk,
    drip_headers,
    hang,
    head,
    healthy,
    send,
    text_line,
)


async def slow_first_byte(request: Request, writer: asyncio.StreamWriter) -> None:
    """Silence (a cold load), then the whole stream at once, as Ollama does."""
    await asyncio.sleep(0.3)
    await send(writer, HEALTHY_STREAM)


async def drip_response(request: Request, writer: asyncio.StreamWriter) -> None:
    """A complete, valid stream, three bytes every millisecond: every line, chunk frame and
    header is cut across reads."""
    for i in range(0, len(HEALTHY_STREAM), 3):
        writer.write(HEALTHY_STREAM[i : i + 3])
        await writer.drain()
        await asyncio.sleep(0.001)


async def drip_after_text(request: Request, writer: asyncio.StreamWriter) -> None:
    """Two tokens, then a newline now and then, forever: bytes flow, no chunk completes."""
    writer.write(head(200, [NDJSON]) + chunk(text_line()) + chunk(text_line()))
    for _ in range(10_000):
        writer.write(chunk(b"\n"))
        await writer.drain()
        await asyncio.sleep(0.02)


async def stall(request: Request, writer: asyncio.StreamWriter) -> None:
    """Two tokens, then silence for a minute."""
    writer.write(head(200, [NDJSON]) + chunk(text_line()) + chunk(text_line()))
    await writer.drain()
    await asyncio.sleep(60)


async def test_slow_first_byte_is_in_ttft() -> None:
    """Silence before the first byte is a slow TTFT, not a failure."""
    with HostileServer(slow_first_byte) as server:
        result = await probe_hostile(server)
    assert result.success, result.detail
    assert result.ttft_ns is not None
    assert result.ttft_ns >= 0.3 * NS_PER_S


async def test_dripped_stream_succeeds() -> None:
    """A valid stream delivered a byte at a time is reassembled and succeeds."""
    with HostileServer(drip_response) as server:
        result = await probe_hostile(server)
    assert result.success, result.detail
    assert result.output_tokens == 3


async def test_stall_after_text_is_timeout_stall() -> None:
    """Silence after tokens began, longer than stall_timeout: timeout_stall."""
    with HostileServer(stall) as server:
        result = await probe_hostile(server, timeout="10s", stall_timeout="300ms")
    assert result.reason is Reason.TIMEOUT_STALL, result.detail


async def test_drip_after_text_is_bounded_by_timeout() -> None:
    """Newlines dripped after the first tokens keep the stall timer fed (bytes are
    progress), but the overall timeout still ends the probe: timeout_total."""
    with HostileServer(drip_after_text) as server:
        result = await probe_hostile(server, timeout="600ms", stall_timeout="300ms")
    assert result.reason is Reason.TIMEOUT_TOTAL, result.detail


async def test_dripped_headers_beside_a_healthy_target() -> None:
    """Headers dripped forever: timeout_first_token at the probe's own timeout, and the
    healthy target next to it keeps its pace."""
    with RemoteServers(drip_headers, healthy) as servers:
        bad, good = servers.urls
        beside = await beside_healthy(two_targets(bad, good))
        await servers.wait_released()
    assert beside.hostile.reason is Reason.TIMEOUT_FIRST_TOKEN, beside.hostile.detail
    beside.assert_healthy_on_schedule()
    beside.assert_memory_flat()


async def test_many_hanging_targets_beside_a_healthy_one() -> None:
    """Eight targets that never answer, probed at once with a healthy one: each hangs
    until its own timeout, none delays the healthy target, every socket is closed."""
    with RemoteServers(healthy, *[hang] * 8) as servers:
        good, *bad = servers.urls
        urls = {f"hang{i}": url for i, url in enumerate(bad)}
        settings = settings_for(urls, timeout="1s", stall_timeout="500ms")
        hanging = asyncio.create_task(run_all(settings))
        beside = await beside_healthy(two_targets(bad[0], good))
        results = await hanging
        await servers.wait_released()
        assert all(accepted >= 1 for accepted, _ in servers.counts()[1:])
    assert beside.hostile.reason is Reason.TIMEOUT_FIRST_TOKEN, beside.hostile.detail
    assert [r.reason for r in results] == [Reason.TIMEOUT_FIRST_TOKEN] * 8
    beside.assert_healthy_on_schedule()
