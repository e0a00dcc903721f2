"""A lean asyncio network backend for httpcore, so the client adds little to TTFT.

httpx reaches the network through httpcore's AnyIO backend. Its ``connect_tcp`` resolves
even an IP literal with ``getaddrinfo`` in a worker thread and connects inside a task group
(happy eyeballs), and every read passes a cancel scope: about 5.5 ms of client overhead in
each TTFT on our 2-core test machine (``benchmarks/accuracy.py``). TTFT must include DNS and
connect, but not our own overhead.

This backend is a plain ``asyncio.Protocol``: ``loop.create_connection`` skips resolution
for IP literals and resolves host names as usual, and ``data_received`` timestamps each
arrival with the injected clock the moment the event loop hands it over, before any HTTP
parsing and without waiting for a reader coroutine to be resumed. The start of each
connection (before DNS, TCP and TLS: the probe's ``t0``) is stamped too. Both go to the
``WireLog`` of the exchange (see ``recording``), with what a failed exchange needs to be
classified: whether the peer closed the connection, and the first bytes it sent.

Errors and timeouts map onto httpcore's exceptions as the AnyIO backend maps them, so httpx's
error types are unchanged (a TLS failure is still ``ConnectError`` caused by ``ssl.SSLError``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpcore

CLOSE_WAIT_S = 1.0
# Stop reading from the socket while this much is buffered and unread (flow control).
HIGH_WATER_BYTES = 1024 * 1024
# How many of a connection's first bytes a WireLog keeps: enough to see "HTTP/" or not.
HEAD_BYTES = 16

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


@dataclass(slots=True)
class WireLog:
    """What the transport saw of one exchange, for timing and for naming a failure.

    Fields:
        connect_started_ns: when the connection began, before DNS, TCP and TLS.
        last_arrival_ns: when the bytes most recently handed to the HTTP parser arrived.
        received: how many bytes were handed to the HTTP parser.
        head: the first bytes received (up to 16): tells an answer that is not HTTP at all
            (a TLS alert, an SSH banner) from an HTTP response cut short.
        eof: the HTTP parser was handed end-of-stream: the peer closed the connection. An
            HTTP error raised *before* that is the server's bytes breaking the protocol.
    """

    connect_started_ns: int | None = None
    last_arrival_ns: int | None = None
    received: int = 0
    head: bytes = b""
    eof: bool = False


_WIRE: ContextVar[WireLog | None] = ContextVar("exporter_wire_log", default=None)


@contextmanager
def recording(wire: WireLog) -> Iterator[WireLog]:
    """Connections opened in this block, by this task, report to ``wire``.

    httpcore opens a connection inside the task that sends the request, so a context
    variable reaches the backend without any API of httpx's. Connections are never reused
    (the client keeps none alive), so a connection's log is its exchange's log.
    """
    token = _WIRE.set(wire)
    try:
        yield wire
    finally:
        _WIRE.reset(token)


async def _with_timeout(coro: Any, timeout: float | None, exc: type[Exception]) -> Any:
    try:
        async with asyncio.timeout(timeout):
            return await coro
    except TimeoutError as err:
        raise exc(str(err) or "timed out") from err


class _StampingProtocol(asyncio.Protocol):
    """Buffers received data with its arrival time; wakes one waiting reader."""

    def __init__(self, now: Callable[[], int]) -> None:
        self._now = now
        self._chunks: deque[tuple[int, bytes]] = deque()
        self._buffered = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._can_write: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._chunks.append((self._now(), data))
        self._buffered += len(data)
        if self._buffered > HIGH_WATER_BYTES and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._error = exc
        self._wake()
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    @property
    def at_eof(self) -> bool:
        return self._eof

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self, max_bytes: int) -> tuple[int | None, bytes]:
        """The next buffered bytes (at most ``max_bytes``) and when they arrived.

        When data is already waiting, it is taken on the next pass of the event loop, not at
        once: a server that floods would otherwise keep this reader running without a break,
        and timers (every probe deadline) and other probes would wait until it stopped.
        """
        if self._chunks:
            await asyncio.sleep(0)
        while not self._chunks:
            if self._eof:
                if self._error is not None:
                    raise self._error
                return None, b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        stamp, data = self._chunks.popleft()
        if len(data) > max_bytes:
            self._chunks.appendleft((stamp, data[max_bytes:]))
            data = data[:max_bytes]
        self._buffered -= len(data)
        if self._paused and self._buffered <= HIGH_WATER_BYTES // 2 and self.transport:
            self._paused = False
            self.transport.resume_reading()
        return stamp, data

    async def drain(self) -> None:
        if self._error is not None:
            raise self._error
        if self._can_write is not None:
            await self._can_write

    async def wait_closed(self) -> None:
        await self._closed


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection, reporting what it reads to its exchange's ``WireLog``."""

    def __init__(self, protocol: _StampingProtocol, wire: WireLog) -> None:
        assert protocol.transport is not None
        self._protocol = protocol
        self._transport: asyncio.Transport = protocol.transport
        self.wire = wire

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        wire = self.wire
        try:
            stamp: int | None
            data: bytes
            stamp, data = await _with_timeout(
                self._protocol.read(max_bytes), timeout, httpcore.ReadTimeout
            )
        except OSError as err:
            wire.eof = True
            raise httpcore.ReadError(str(err)) from err
        if not data:
            wire.eof = True
            return data
        if stamp is not None:
            wire.last_arrival_ns = stamp
        if wire.received < HEAD_BYTES:
            wire.head += data[: HEAD_BYTES - wire.received]
        wire.received += len(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            if self._transport.is_closing():
                raise ConnectionResetError("connection closed by peer")
            self._transport.write(buffer)
            await _with_timeout(self._protocol.drain(), timeout, httpcore.WriteTimeout)
        except OSError as err:
            raise httpcore.WriteError(str(err)) from err

    async def aclose(self) -> None:
        self._transport.close()
        # A transport a failed TLS handshake left behind may never report itself closed.
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self._protocol.wait_closed()
        except TimeoutError:
            self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await _with_timeout(
                loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                ),
                timeout,
                httpcore.ConnectTimeout,
            )
        except (OSError, ssl.SSLError) as err:
            self._transport.abort()
            raise httpcore.ConnectError(str(err)) from err
        except httpcore.ConnectTimeout:
            self._transport.abort()
            raise
        if transport is None:
            raise httpcore.ConnectError("TLS handshake failed: connection closed")
        self._transport = self._protocol.transport = transport
        return self

    def get_extra_info(self, info: str) -> Any:
        if info in ("ssl_object", "socket"):
            return self._transport.get_extra_info(info)
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "is_readable":
            # Only asked before reusing a kept-alive connection: at EOF it is "readable".
            return self._protocol.at_eof or self._transport.is_closing()
        return None


def _started(now_ns: int) -> WireLog:
    """The log of the exchange opening a connection now (a private one outside ``recording``)."""
    wire = _WIRE.get() or WireLog()
    wire.connect_started_ns = now_ns
    return wire


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend interface over plain asyncio; ``now`` stamps in ns."""

    def __init__(self, now: Callable[[], int]) -> None:
        self._now = now

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        wire = _started(self._now())
        loop = asyncio.get_running_loop()
        local = None if local_address is None else (local_address, 0)
        try:
            _, protocol = await _with_timeout(
                loop.create_connection(
                    lambda: _StampingProtocol(self._now), host, port, local_addr=local
                ),
                timeout,
                httpcore.ConnectTimeout,
            )
        except OSError as err:
            raise httpcore.ConnectError(str(err)) from err
        stream = AsyncioStream(protocol, wire)
        sock = stream.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return stream

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        wire = _started(self._now())
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await _with_timeout(
                loop.create_unix_connection(lambda: _StampingProtocol(self._now), path),
                timeout,
                httpcore.ConnectTimeout,
            )
        except OSError as err:
            raise httpcore.ConnectError(str(err)) from err
        return AsyncioStream(protocol, wire)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
