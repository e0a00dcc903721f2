"""Hostile servers in a child process, for the tests that time a healthy target beside them.

A server thread shares the interpreter lock with the prober: a busy one (a flood) or a
crowd of them (eight hanging targets) costs the prober's thread up to a switch interval at
every system call, and on a loaded machine a lock holder descheduled by the OS stalls the
prober outright. Real servers share nothing with the exporter, so the tests that judge a
healthy target's pace run every server, the healthy one included, in one child process.

The child runs ``HostileServer`` threads and answers the parent over a pipe: the ports
once, then the connection counters whenever asked. Handlers must be picklable: functions
defined at module level, or ``functools.partial`` of one.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from contextlib import ExitStack, suppress
from multiprocessing.connection import Connection
from types import TracebackType

from tests.hostile.server import Handler, HostileServer

START_TIMEOUT_S = 30.0
ANSWER_TIMEOUT_S = 10.0


def _child(handlers: list[Handler], conn: Connection) -> None:
    with ExitStack() as stack:
        servers = [stack.enter_context(HostileServer(h)) for h in handlers]
        conn.send([s.port for s in servers])
        while conn.recv() == "counts":
            conn.send([(s.accepted, s.released) for s in servers])


class RemoteServers:
    """``with RemoteServers(h1, h2) as servers:`` serves ``servers.urls[i]`` with ``hi``."""

    def __init__(self, *handlers: Handler) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded test process
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=_child, args=(list(handlers), child_conn), name="hostile-servers"
        )
        self.urls: list[str] = []

    def __enter__(self) -> RemoteServers:
        self._process.start()
        if not self._conn.poll(START_TIMEOUT_S):
            self._process.kill()
            raise RuntimeError("hostile server process did not start")
        self.urls = [f"http://127.0.0.1:{port}" for port in self._conn.recv()]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with suppress(OSError):  # the child is gone already
            self._conn.send("stop")
        self._process.join(ANSWER_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(ANSWER_TIMEOUT_S)
        self._conn.close()

    def counts(self) -> list[tuple[int, int]]:
        """(accepted, released) connections of each server."""
        self._conn.send("counts")
        if not self._conn.poll(ANSWER_TIMEOUT_S):
            raise RuntimeError("hostile server process did not answer")
        counts: list[tuple[int, int]] = self._conn.recv()
        return counts

    async def wait_released(self, timeout: float = 10.0) -> None:
        """Until every connection accepted by any of the servers is released."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counts()
            if all(released >= accepted for accepted, released in counts):
                return
            assert time.monotonic() < deadline, f"connections not released: {counts}"
            await asyncio.sleep(0.02)
