"""Hand-written fakes for pure unit tests: a clock that only moves when told to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeClock:
    """Monotonic ns and unix seconds that advance only through ``advance``."""

    now_ns: int = 1_000_000_000
    unix: float = 1_800_000_000.0

    def monotonic_ns(self) -> int:
        return self.now_ns

    def time(self) -> float:
        return self.unix

    def advance(self, seconds: float) -> None:
        self.now_ns += round(seconds * 1e9)
        self.unix += seconds
