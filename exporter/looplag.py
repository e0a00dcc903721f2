"""How late the event loop runs what is due: the exporter's own delay, which probes absorb.

Every timestamp the prober takes on the loop (a probe's ``t0``, an arrival where the kernel
stamps none), every deadline and every scheduled start waits while the loop is busy with
other work. This monitor asks the loop to call it at a known time and records how late the
call came, about ten times a second: the same delay a timer, a deadline or a ready socket
meets. An idle loop shows up to ~1 ms: the selector's timeout is rounded up to whole
milliseconds. Each period is drawn at random around the mean, so that a load that comes in
waves (jobs with one interval) is not sampled at the same point of every wave.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

SAMPLE_PERIOD_S = 0.1


class LoopLagMonitor:
    """Calls ``observe(seconds_late)`` for each sample, from the loop it was started on."""

    def __init__(self, observe: Callable[[float], None], period_s: float = SAMPLE_PERIOD_S) -> None:
        self._observe = observe
        self._period_s = period_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self._timer is not None

    def start(self) -> None:
        """Start sampling; call from inside the running loop."""
        if self._timer is None:
            self._loop = asyncio.get_running_loop()
            self._schedule(self._loop.time())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, now: float) -> None:
        assert self._loop is not None
        due = now + self._period_s * (0.5 + random.random())
        self._timer = self._loop.call_at(due, self._sample, due)

    def _sample(self, due: float) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self._schedule(now)
        self._observe(max(0.0, now - due))
