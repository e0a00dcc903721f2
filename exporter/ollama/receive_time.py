"""When bytes reached this host, as the kernel saw it: Linux receive timestamps on our clock.

A timestamp taken when the event loop hands data over is late by however long the loop was
busy with other work: with 200 streams in flight, ~10 ms. Linux stamps every incoming packet
as it is received (``SO_TIMESTAMPNS``) and hands the stamp of the newest packet a ``recvmsg``
returns as ancillary data, so a reader that is late still learns when the bytes came. For a
TLS connection the stamped bytes are ciphertext, and their arrival is the arrival of the
plaintext they carry.

The kernel stamps with ``CLOCK_REALTIME``, every timing here runs on the monotonic clock.
Slewing (NTP, chrony) changes both clocks' rates alike, so their difference moves only when
the wall clock is *stepped* (``settimeofday``, a leap second). ``RealtimeBridge`` measures
that difference, re-measures it every second and whenever a read suggests it moved, and
after a step distrusts every stamp that may have been taken on the other side of it: those
reads fall back to the time of the read, as do reads the kernel stamped no time for.

Other platforms (and architectures whose socket option numbers differ) get no kernel
stamps: ``available()`` is False and the transport stamps arrivals when it reads them.
"""

from __future__ import annotations

import functools
import logging
import platform
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

# Linux's generic values (asm-generic/socket.h); Python's socket module does not export them.
# Alpha, MIPS, PA-RISC and SPARC number their options differently and are left out.
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
_GENERIC_ARCHES = ("x86_64", "amd64", "i386", "i686", "aarch64", "arm64", "armv7l", "armv8l",
                   "riscv64", "ppc64le", "ppc64", "s390x", "loongarch64")  # fmt: skip
# struct timespec as SO_TIMESTAMPNS delivers it: two native longs (seconds, nanoseconds).
_TIMESPEC = struct.Struct("@ll")
ANCILLARY_BYTES = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0

NS_PER_S = 1_000_000_000
# Re-measure the clocks' difference this often, to catch steps too small for the quick check.
RECHECK_NS = NS_PER_S
# A read whose quick sample of the difference is this far off re-measures it at once.
QUICK_CHECK_NS = 100_000
# A re-measured difference this far from the last one is a step of the wall clock.
STEP_NS = 50_000
# A measurement whose two monotonic reads are this close is taken as exact.
TIGHT_NS = 2_000
CALIBRATION_TRIES = 5

Ancillary = Sequence[tuple[int, int, bytes]]


@functools.cache
def available() -> bool:
    """Whether this platform gives TCP sockets kernel receive timestamps (checked once).

    The socket the check succeeds on is kept open for good: the kernel switches its
    timestamping on while any socket asks for it, and toggling that switch patches kernel
    code on every CPU. With one socket holding it on, probe connections never toggle it, and
    no packet arrives unstamped while it switches.
    """
    if not sys.platform.startswith("linux") or platform.machine().lower() not in _GENERIC_ARCHES:
        return False
    if not ANCILLARY_BYTES or not hasattr(socket.socket, "recvmsg_into"):
        return False
    keeper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        keeper.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        keeper.close()
        return False
    _KEEPERS.append(keeper)
    return True


_KEEPERS: list[socket.socket] = []


def enable(sock: socket.socket) -> bool:
    """Ask the kernel to stamp what ``sock`` receives; False if it refuses."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def kernel_stamp(ancillary: Ancillary) -> int | None:
    """The ``CLOCK_REALTIME`` ns the kernel stamped on a read, if it sent one."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            stamp: int = seconds * NS_PER_S + nanoseconds
            return stamp or None
    return None


class RealtimeBridge:
    """Converts kernel (``CLOCK_REALTIME``) stamps to the injected monotonic clock ``now``.

    Counters, for tests and debugging: ``kernel`` reads converted, ``fallback`` reads stamped
    with ``now`` instead, ``steps`` wall-clock steps seen.
    """

    def __init__(self, now: Callable[[], int], realtime: Callable[[], int] = time.time_ns) -> None:
        self._now = now
        self._realtime = realtime
        self._offset = 0
        self._next_check_ns = 0
        self._trusted_from_ns: int | None = None
        self.kernel = 0
        self.fallback = 0
        self.steps = 0
        self._calibrate(first=True)

    def arrival(self, stamp: int | None, floor_ns: int) -> int:
        """When a read's bytes arrived, on the monotonic clock: the kernel's ``stamp``
        converted, or now when there is none or it cannot be trusted. ``floor_ns`` is the
        earliest time they can have arrived (when the connection started)."""
        now = self._now()
        if stamp is None:
            self.fallback += 1
            return now
        if (
            now >= self._next_check_ns
            or abs(self._realtime() - now - self._offset) > QUICK_CHECK_NS
        ):
            now = self._calibrate()
        arrived = stamp - self._offset
        trusted = self._trusted_from_ns
        if arrived < floor_ns or (trusted is not None and arrived < trusted):
            self.fallback += 1
            return now
        self.kernel += 1
        # A hair in the future is the measurement's own error; never later than the read.
        return min(arrived, now)

    def _calibrate(self, *, first: bool = False) -> int:
        """Measure the difference between the clocks; return the monotonic time after it."""
        best_span = best_offset = after = 0
        for attempt in range(CALIBRATION_TRIES):
            before = self._now()
            real = self._realtime()
            after = self._now()
            span = after - before
            if attempt == 0 or span < best_span:
                best_span, best_offset = span, real - (before + after) // 2
            if span <= TIGHT_NS:
                break
        moved = abs(best_offset - self._offset)
        if not first and moved > STEP_NS:
            # A stamp taken before the step converts up to ``moved`` away from the truth, to
            # somewhere before ``after + moved``; only stamps after that are sure to be new.
            self.steps += 1
            self._trusted_from_ns = after + moved
            log.warning(
                "wall clock stepped: kernel receive timestamps ignored for a moment",
                extra={"fields": {"step_ms": round(moved / 1e6, 3)}},
            )
        self._offset = best_offset
        self._next_check_ns = after + RECHECK_NS
        return after
