"""The one clock every timing in the exporter comes from, injectable so tests never sleep."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic integer nanoseconds for intervals, wall-clock seconds for timestamps."""

    def monotonic_ns(self) -> int: ...

    def time(self) -> float: ...


class SystemClock:
    """The real clock: CLOCK_MONOTONIC (shared by every process on the host) and unix time."""

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def time(self) -> float:
        return time.time()
