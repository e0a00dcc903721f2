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
from tests.hostile.server import NDJSON, HostileServer, Request, chunk, head, healthy, text_line

BIG_LINE = text_line("x" * 2_000_000)
FRAME = chunk(BIG_LINE)


class BigStreams:
    """Generations answered with 2 MB text lines, a little apart, for far longer than any
    test waits; ``/api/ps`` (asked before each run) answered as a healthy server would.
    Counts the streams started and the lines taken by the client."""

    def __init__(self) -> None:
        self.streams = 0
        self.lines = 0

    async def __call__(self, request: Request, writer: asyncio.StreamWriter) -> None:
        if not request.path.endswith("/api/generate"):
            await healthy(request, writer)
            return
        self.streams += 1
        writer.write(head(200, [NDJSON]))
        for _ in range(1000):
            writer.write(FRAME)
            await writer.drain()
            self.lines += 1
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
    big = BigStreams()
    with HostileServer(big) as server:
        settings = settings_for(
            {f"t{i}": server.url for i in range(4)}, interval="1h", timeout="60s"
        )
        results: list[ProbeResult] = []
        runner = ProbeRunner(SystemClock())
        runner.configure(settings.targets)
        scheduler = ProbeScheduler(runner.run, results.append)
        scheduler.start(settings.jobs())
        # At least, not exactly: a run's /api/ps question may have its own connection.
        await until(lambda: server.accepted >= 4)
        if moment == "streaming":
            # Every stream started, and several 2 MB lines into each.
            await until(lambda: big.streams == 4 and big.lines >= 4 * 4)
        await scheduler.shutdown(grace_s=grace_s)
        await runner.aclose()
        await server.wait_released()
    assert results == []
    assert not scheduler.running
