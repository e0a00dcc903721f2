"""The event-loop lag monitor: it samples on its own, never reports a negative lag, sees a
loop held up for a while, and stops when told."""

from __future__ import annotations

import asyncio

from exporter.looplag import LoopLagMonitor


class Samples:
    """Collects samples; ``wait(n)`` returns once there are ``n``."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self._more = asyncio.Event()

    def observe(self, lag: float) -> None:
        self.values.append(lag)
        self._more.set()

    async def wait(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.values) < count:
                self._more.clear()
                await self._more.wait()


async def test_samples_until_stopped() -> None:
    """Samples keep coming at the period, none negative; after ``stop`` none come."""
    samples = Samples()
    monitor = LoopLagMonitor(samples.observe, period_s=0.001)
    monitor.start()
    assert monitor.running
    await samples.wait(5)
    timer = monitor._timer
    assert timer is not None
    monitor.stop()
    assert not monitor.running
    assert timer.cancelled()  # the next sample will not come
    seen = len(samples.values)
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(samples.values) == seen
    assert all(lag >= 0.0 for lag in samples.values)


async def test_a_held_loop_shows_as_lag() -> None:
    """A callback that holds the loop past the monitor's due time makes that sample at
    least as late as the hold went past it."""
    samples = Samples()
    monitor = LoopLagMonitor(samples.observe, period_s=0.001)
    monitor.start()
    loop = asyncio.get_running_loop()
    timer = monitor._timer
    assert timer is not None
    held_past = 0.02
    while loop.time() < timer.when() + held_past:
        pass  # the loop is busy here: nothing else on it runs
    await samples.wait(1)
    monitor.stop()
    assert samples.values[0] >= held_past
