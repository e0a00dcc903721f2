"""Shutdown with big responses in flight: cancelled once, no traceback, every socket closed."""

from __future__ import annotations

import asyncio
import time

import pytest

from exporter.clock import SystemClock
from exporter.result import ProbeResult
from exporter.runner import ProbeRunner
from exporter.scheduler import ProbeScheduler
from tests.hostile.probing import settings_for
from tests.hostile.server import NDJSON, HostileServer, Request, chunk, head, text_line

BIG_LINE = text_line("x" * 2_000_000)


async def big_stream(request: Request, writer: asyncio.StreamWriter) -> None:
    """2 MB text lines, a little apart, for far longer than any test waits."""
    writer.write(head(200, [NDJSON]))
    frame = chunk(BIG_LINE)
    for _ in range(1000):
        writer.write(frame)
        await writer.drain()
        await asyncio.sleep(0.01)


async def until(predicate, timeout: float = 30.0) -> None:
    """Wait for ``predicate``; the deadline is for a hang, not for a slow machine."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("grace_s", [5.0, 0.0], ids=["grace", "no-grace"])
@pytest.mark.parametrize("moment", ["connected", "streaming"])
async def test_shutdown_mid_stream_is_clean(moment: str, grace_s: float) -> None:
    """SIGTERM's path (scheduler shutdown, then the runner's close) while four probes read
    2 MB lines: nothing is recorded for them, nothing is logged as an error, and every
    connection is closed. Without a grace period the probes are still unwinding when the
    clients close under them, and that too must stay quiet."""
    with HostileServer(big_stream) as server:
        settings = settings_for(
            {f"t{i}": server.url for i in range(4)}, interval="1h", timeout="60s"
        )
        results: list[ProbeResult] = []
        runner = ProbeRunner(SystemClock())
        runner.configure(settings.targets)
        scheduler = ProbeScheduler(runner.run, results.append)
        scheduler.start(settings.jobs())
        await until(lambda: server.accepted == 4)
        if moment == "streaming":
            await until(lambda: len(server.requests) == 4)
            await asyncio.sleep(0.2)  # several 2 MB lines into each stream
        await scheduler.shutdown(grace_s=grace_s)
        await runner.aclose()
        await server.wait_released()
    assert results == []
    assert not scheduler.running
