"""The web server's bounds: how many connections it holds, and for how long.

The exporter shares one process, and one file-descriptor limit, with its probes. Idle, slow
or hostile HTTP clients must be able to neither starve scrapes nor take the descriptors that
probes need, so every connection holds a slot from a fixed budget, every read and write of it
runs against a deadline, and its request head is read up to a byte budget.
"""

from __future__ import annotations

import contextlib
import io
import resource
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

OWN_FDS = 3  # the listening socket and the wake-up socket pair
# The request head, request line included, as in the simulator. http.server's own bounds
# (64 KiB a line, 100 lines) let each connection send 6 MB of headers: some 45 MB of memory
# once parsed.
MAX_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class ServerLimits:
    """How much the web server may hold; the defaults suit one or two Prometheus servers."""

    max_connections: int = 64
    header_timeout: float = 10.0
    write_timeout: float = 30.0
    backlog: int = 128

    def check(self, fd_limit: int | None = None) -> None:
        """Refuse limits that would leave the probes short of file descriptors: the server
        may use at most half of the process's limit (``RLIMIT_NOFILE``)."""
        if self.max_connections < 1 or self.backlog < 1:
            raise ValueError("max_connections and backlog must be at least 1")
        if self.header_timeout <= 0 or self.write_timeout <= 0:
            raise ValueError("header_timeout and write_timeout must be positive")
        if fd_limit is None:
            fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if fd_limit != resource.RLIM_INFINITY and self.max_connections + OWN_FDS > fd_limit // 2:
            raise ValueError(
                f"max_connections {self.max_connections} would leave too few of the process's "
                f"{fd_limit} file descriptors for probes (at most {fd_limit // 2 - OWN_FDS})"
            )


class HeadTooLarge(Exception):
    """The request head did not end within ``MAX_HEAD_BYTES``."""


def remaining(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(what)
    return left


class ConnectionSlots:
    """The connection budget: taken before ``accept()``, given back after ``close()``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.peak = 0
        self._cond = threading.Condition()
        self._taken = 0
        self._open: set[socket.socket] = set()
        self._closing = False

    @property
    def open(self) -> int:
        with self._cond:
            return len(self._open)

    def take(self) -> bool:
        """Wait for a free slot; ``False`` once the server is closing."""
        with self._cond:
            while self._taken >= self.limit and not self._closing:
                self._cond.wait()
            if self._closing:
                return False
            self._taken += 1
            return True

    def hold(self, sock: socket.socket) -> None:
        with self._cond:
            self._open.add(sock)
            self.peak = max(self.peak, len(self._open))

    def swap(self, old: socket.socket, new: socket.socket) -> None:
        with self._cond:
            self._open.discard(old)
            self._open.add(new)

    def give_back(self, sock: socket.socket | None) -> None:
        with self._cond:
            if sock is not None:
                self._open.discard(sock)
            self._taken -= 1
            self._cond.notify()

    def close(self) -> None:
        """Wake the accept loop and cut every open connection, so their threads end too."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            for sock in self._open:
                with contextlib.suppress(OSError):  # already closed by its thread
                    sock.shutdown(socket.SHUT_RDWR)


class DeadlineIO(io.RawIOBase):
    """Socket I/O with deadlines: one for the whole request head, one for the whole response.

    A socket timeout alone restarts with every byte received, which is exactly what a
    slowloris client exploits; here each read gets only what is left of the head's deadline,
    and of its ``MAX_HEAD_BYTES`` (``HeadTooLarge`` once they are spent).
    """

    def __init__(self, sock: socket.socket, head_deadline: float, write_timeout: float) -> None:
        super().__init__()
        self._sock = sock
        self._head_deadline: float | None = head_deadline
        self._head_left = MAX_HEAD_BYTES
        self._write_timeout = write_timeout
        self._write_deadline: float | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def head_complete(self) -> None:
        self._head_deadline = None

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self._head_deadline is None:
            self._sock.settimeout(self._write_timeout)
            return self._sock.recv_into(buffer)
        if self._head_left <= 0:
            raise HeadTooLarge(f"request head over {MAX_HEAD_BYTES} bytes")
        self._sock.settimeout(remaining(self._head_deadline, "request head not complete in time"))
        received = self._sock.recv_into(buffer, min(memoryview(buffer).nbytes, self._head_left))
        self._head_left -= received
        return received

    def write(self, data: ReadableBuffer) -> int:
        if self._write_deadline is None:
            self._write_deadline = time.monotonic() + self._write_timeout
        self._sock.settimeout(remaining(self._write_deadline, "response not written in time"))
        return self._sock.send(data)
