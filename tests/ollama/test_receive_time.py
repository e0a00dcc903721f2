"""Kernel receive timestamps: reading them, and carrying them onto the monotonic clock across
steps of the wall clock, with hand-driven clocks (no sockets, no waiting)."""

from __future__ import annotations

import platform
import socket
import sys

import pytest

from exporter.ollama import receive_time
from exporter.ollama.receive_time import (
    QUICK_CHECK_NS,
    RECHECK_NS,
    SCM_TIMESTAMPNS,
    STEP_NS,
    RealtimeBridge,
    kernel_stamp,
)

WALL_AT_ZERO = 1_800_000_000 * 10**9  # the wall clock when the monotonic clock reads 0
MS = 1_000_000


class Clocks:
    """A monotonic clock and a wall clock that move only when told; the wall clock can be
    stepped. Each read of the monotonic clock can be made to cost ``tick`` ns."""

    def __init__(self, start_ns: int = 5_000 * MS) -> None:
        self.mono = start_ns
        self.offset = WALL_AT_ZERO
        self.tick = 0

    def now(self) -> int:
        self.mono += self.tick
        return self.mono

    def realtime(self) -> int:
        return self.mono + self.offset

    def wall_at(self, mono_ns: int) -> int:
        """What the kernel stamps for an arrival at ``mono_ns`` (with the current offset)."""
        return mono_ns + self.offset


def timespec(seconds: int, nanoseconds: int) -> bytes:
    return receive_time._TIMESPEC.pack(seconds, nanoseconds)


def test_kernel_stamp_is_read_from_ancillary_data() -> None:
    """The stamp is the SCM_TIMESTAMPNS timespec; other messages and a zero stamp are none."""
    stamp = (socket.SOL_SOCKET, SCM_TIMESTAMPNS, timespec(1_800_000_000, 123))
    other = (socket.IPPROTO_IP, 8, b"\x00" * 16)
    assert kernel_stamp([other, stamp]) == 1_800_000_000 * 10**9 + 123
    assert kernel_stamp([other]) is None
    assert kernel_stamp([]) is None
    assert kernel_stamp([(socket.SOL_SOCKET, SCM_TIMESTAMPNS, timespec(0, 0))]) is None
    assert kernel_stamp([(socket.SOL_SOCKET, SCM_TIMESTAMPNS, b"\x01")]) is None


def test_stamp_is_converted_to_the_monotonic_clock() -> None:
    """An arrival the kernel stamped 7 ms before the read is 7 ms before now."""
    clocks = Clocks()
    bridge = RealtimeBridge(clocks.now, clocks.realtime)
    arrived = clocks.mono + 3 * MS
    clocks.mono += 10 * MS
    assert bridge.arrival(clocks.wall_at(arrived), floor_ns=0) == arrived
    assert (bridge.kernel, bridge.fallback) == (1, 0)


def test_reads_without_a_trustworthy_stamp_fall_back_to_now() -> None:
    """No stamp, or one from before the connection started: the time of the read."""
    clocks = Clocks()
    bridge = RealtimeBridge(clocks.now, clocks.realtime)
    floor = clocks.mono
    assert bridge.arrival(None, floor_ns=floor) == clocks.mono
    assert bridge.arrival(clocks.wall_at(floor - 1), floor_ns=floor) == clocks.mono
    assert (bridge.kernel, bridge.fallback) == (0, 2)


def test_an_arrival_is_never_later_than_its_read() -> None:
    """A stamp a hair in the future (the measurement's own error) is taken as now."""
    clocks = Clocks()
    bridge = RealtimeBridge(clocks.now, clocks.realtime)
    assert bridge.arrival(clocks.wall_at(clocks.mono + 5_000), floor_ns=0) == clocks.mono


@pytest.mark.parametrize("step_ms", [5_000, -5_000, 3, -3])
def test_stamps_from_before_a_wall_clock_step_are_not_trusted(step_ms: int) -> None:
    """A step between an arrival and its read would move the arrival by the step: the read
    falls back to now. Arrivals after the step convert exactly again."""
    clocks = Clocks()
    bridge = RealtimeBridge(clocks.now, clocks.realtime)
    before = clocks.wall_at(clocks.mono)  # stamped with the old offset
    clocks.mono += MS
    clocks.offset += step_ms * MS
    assert bridge.arrival(before, floor_ns=0) == clocks.mono
    assert bridge.steps == 1
    clocks.mono += abs(step_ms) * MS + MS
    arrived = clocks.mono
    clocks.mono += 2 * MS
    assert bridge.arrival(clocks.wall_at(arrived), floor_ns=0) == arrived


def test_a_step_below_the_quick_check_is_caught_at_the_next_recheck() -> None:
    """A step too small for the per-read check is found within a second; until then it can
    move an arrival by at most that check's margin."""
    clocks = Clocks()
    bridge = RealtimeBridge(clocks.now, clocks.realtime)
    small = (QUICK_CHECK_NS + STEP_NS) // 2
    clocks.offset += small
    arrived = clocks.mono
    clocks.mono += MS
    assert abs(bridge.arrival(clocks.wall_at(arrived), floor_ns=0) - arrived) == small
    assert bridge.steps == 0
    clocks.mono += RECHECK_NS
    arrived = clocks.mono - MS
    assert bridge.arrival(clocks.wall_at(arrived), floor_ns=0) == clocks.mono  # distrusted
    assert bridge.steps == 1
    clocks.mono += 10 * MS
    arrived = clocks.mono - MS
    assert bridge.arrival(clocks.wall_at(arrived), floor_ns=0) == arrived


def test_calibration_keeps_its_tightest_measurement() -> None:
    """The clocks are read in turn, so time passes between the reads: the difference is
    taken from the pair read closest together, and conversion stays exact to a few µs."""
    clocks = Clocks()
    clocks.tick = 40_000  # 40 µs per monotonic read: no attempt is "tight"
    bridge = RealtimeBridge(clocks.now, clocks.realtime)
    clocks.tick = 0
    arrived = clocks.mono - MS
    assert abs(bridge.arrival(clocks.wall_at(arrived), floor_ns=0) - arrived) <= 40_000


def test_no_kernel_stamps_where_the_platform_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off Linux, or on an architecture with other option numbers, there are none."""
    receive_time.available.cache_clear()
    try:
        monkeypatch.setattr(sys, "platform", "darwin")
        assert not receive_time.available()
        receive_time.available.cache_clear()
        monkeypatch.setattr(sys, "platform", "linux")
        monkeypatch.setattr(platform, "machine", lambda: "sparc64")
        assert not receive_time.available()
    finally:
        receive_time.available.cache_clear()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux receive timestamps")
def test_linux_has_kernel_stamps() -> None:
    """The machines this runs on (Linux, x86-64 or ARM) do offer them."""
    assert receive_time.available()
    with socket.socket() as sock:
        assert receive_time.enable(sock)
