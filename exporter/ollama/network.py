"""A lean asyncio network backend for httpcore, so the client adds little to TTFT.

httpx reaches the network through httpcore's AnyIO backend. Its ``connect_tcp`` resolves
even an IP literal with ``getaddrinfo`` in a worker thread and connects inside a task group
(happy eyeballs), and every read passes a cancel scope: about 5.5 ms of client overhead in
each TTFT on our 2-core test machine (``benchmarks/accuracy.py``). TTFT must include DNS and
connect, but not our own overhead.

This backend connects with plain asyncio (no resolution for IP literals, host names resolved
as usual) and stamps each arrival before any HTTP parsing and without waiting for a reader
coroutine to be resumed. Where Linux offers receive timestamps (``receive_time``), a small
socket transport reads with ``recvmsg`` and takes the kernel's stamp of the bytes: the time
they reached the host, however busy the event loop was with other streams when it got to
them (with 200 streams in flight that is ~10 ms). Elsewhere the stamp is the moment the
loop hands the bytes to ``data_received``. The start of each connection (before DNS, TCP
and TLS: the probe's ``t0``) is stamped too. Both go to the ``WireLog`` of the exchange (see
``recording``), with what a failed exchange needs to be classified: whether the peer closed
the connection, and the first bytes it sent.

Errors and timeouts map onto httpcore's exceptions as the AnyIO backend maps them, so httpx's
error types are unchanged (a TLS failure is still ``ConnectError`` caused by ``ssl.SSLError``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import socket
import ssl
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpcore

from exporter.ollama import receive_time
from exporter.ollama.receive_time import RealtimeBridge

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 1.0
# Stop reading from the socket while this much is buffered and unread (flow control).
HIGH_WATER_BYTES = 1024 * 1024
# At most this much per socket read (httpcore asks for 64 KiB at a time).
READ_BYTES = 64 * 1024
# Write-buffer limits of the stamping transport, as asyncio's own transports set them.
WRITE_HIGH_WATER_BYTES = 64 * 1024
# How many of a connection's first bytes a WireLog keeps: enough to see "HTTP/" or not.
HEAD_BYTES = 16


def _no_sniffio_lookups() -> None:
    """Let ``import sniffio`` fail at once when sniffio is not installed.

    httpcore tries ``import sniffio`` each time it sets up one of its locks or events: a few
    times per connection, one of them between connect and sending the request, inside TTFT.
    anyio 4 no longer brings sniffio along, and a failed import searches every ``sys.path``
    entry again each time: ~0.35 ms of event-loop time per attempt on our test machine. A
    ``None`` in ``sys.modules`` is Python's own way of saying "not importable" (an
    ``ImportError`` in ~1 µs); httpcore then assumes asyncio, which is what runs it here.
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


_no_sniffio_lookups()

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
    if timeout is None:  # every body read of a probe: its deadline is the prober's own
        return await coro
    try:
        async with asyncio.timeout(timeout):
            return await coro
    except TimeoutError as err:
        raise exc(str(err) or "timed out") from err


class _StampingProtocol(asyncio.Protocol):
    """Buffers received data with its arrival time; wakes one waiting reader.

    Over a ``_StampedSocketTransport`` the arrival time is the one it took for the read that
    delivered the data (with TLS: the read of the ciphertext, decrypted within the same
    call); over any other transport, the moment ``data_received`` runs.
    """

    def __init__(self, now: Callable[[], int]) -> None:
        self._now = now
        self._stamper: _StampedSocketTransport | None = None
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
        if isinstance(transport, _StampedSocketTransport):
            self._stamper = transport  # kept across start_tls: it still reads the socket

    def data_received(self, data: bytes) -> None:
        stamper = self._stamper
        stamp = self._now() if stamper is None else stamper.arrival_ns
        self._chunks.append((stamp, data))
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


_NO_PROTOCOL = asyncio.Protocol()  # what a closed transport talks to


class _StampedSocketTransport(asyncio.Transport):
    """A TCP transport that reads with ``recvmsg``, to get the kernel's receive timestamps.

    asyncio's own socket transport reads with ``recv``, which drops the ancillary data the
    stamps come in, and offers no hook to read differently. This one does what a client
    connection needs and no more: reads (into a buffered protocol too: TLS via
    ``loop.start_tls`` is one), buffered writes with flow control, half-close, close and
    abort. ``arrival_ns`` is the arrival time of the bytes of the latest read, set before
    they are handed to the protocol.
    """

    _start_tls_compatible = True  # loop.start_tls accepts any transport that says so

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        bridge: RealtimeBridge,
        floor_ns: int,
    ) -> None:
        extra = {"socket": sock, "sockname": sock.getsockname(), "peername": sock.getpeername()}
        super().__init__(extra)
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._bridge = bridge
        self._floor_ns = floor_ns
        self.arrival_ns = floor_ns
        self._protocol = protocol
        self._buffer = bytearray()
        self._closing = False  # close() or abort() called, or a fatal error
        self._lost = False  # connection_lost is scheduled
        self._eof = False  # write_eof() called
        self._reading = True
        self._writing_paused = False
        self._high_water = WRITE_HIGH_WATER_BYTES
        self._low_water = WRITE_HIGH_WATER_BYTES // 4
        protocol.connection_made(self)
        if not self._closing and self._reading:
            loop.add_reader(self._fd, self._read_ready)

    # Reading

    def _read_ready(self) -> None:
        protocol = self._protocol
        try:
            if isinstance(protocol, asyncio.BufferedProtocol):
                buffer = memoryview(protocol.get_buffer(-1))
                if not buffer.nbytes:
                    raise RuntimeError("get_buffer() returned an empty buffer")
                size, ancillary, _, _ = self._sock.recvmsg_into(
                    [buffer], receive_time.ANCILLARY_BYTES
                )
                data = b""
            else:
                data, ancillary, _, _ = self._sock.recvmsg(READ_BYTES, receive_time.ANCILLARY_BYTES)
                size = len(data)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc)
            return
        if not size:
            self._read_eof()
            return
        self.arrival_ns = self._bridge.arrival(receive_time.kernel_stamp(ancillary), self._floor_ns)
        try:
            if isinstance(protocol, asyncio.BufferedProtocol):
                protocol.buffer_updated(size)
            else:
                assert isinstance(protocol, asyncio.Protocol)
                protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc)

    def _read_eof(self) -> None:
        self.pause_reading()
        try:
            keep_open = self._protocol.eof_received()  # type: ignore[attr-defined]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc)
            return
        if not keep_open:
            self.close()

    def pause_reading(self) -> None:
        if self._closing or not self._reading:
            return
        self._reading = False
        self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if self._closing or self._reading:
            return
        self._reading = True
        self._loop.add_reader(self._fd, self._read_ready)

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    # Writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof:
            raise RuntimeError("cannot call write() after write_eof()")
        if self._closing or not data:
            return  # as asyncio's transports: writes after a close go nowhere
        if not self._buffer:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
            self._loop.add_writer(self._fd, self._write_ready)
        self._buffer += data
        if not self._writing_paused and len(self._buffer) > self._high_water:
            self._writing_paused = True
            self._call_protocol("pause_writing")

    def _write_ready(self) -> None:
        if self._lost:
            return
        try:
            sent = self._sock.send(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.remove_writer(self._fd)
            self._buffer.clear()
            self._fatal_error(exc)
            return
        del self._buffer[:sent]
        if self._writing_paused and len(self._buffer) <= self._low_water:
            self._writing_paused = False
            self._call_protocol("resume_writing")
        if self._buffer:
            return
        self._loop.remove_writer(self._fd)
        if self._closing:
            self._lose(None)
        elif self._eof:
            self._shutdown_write()

    def _call_protocol(self, name: str) -> None:
        try:
            getattr(self._protocol, name)()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": f"protocol.{name}() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fatal_error(exc)

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low_water, self._high_water

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        high = WRITE_HIGH_WATER_BYTES if high is None else high
        low = high // 4 if low is None else low
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water, self._low_water = high, low

    # The protocol, closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading; once what is buffered has been written, close the socket."""
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if not self._buffer:
            self._lose(None)

    def abort(self) -> None:
        self._force_close(None)

    def _force_close(self, exc: BaseException | None) -> None:
        """Close at once, dropping unsent data (``SSLProtocol`` calls this one too)."""
        if self._lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._loop.remove_writer(self._fd)
        if not self._closing:
            self._closing = True
            self._loop.remove_reader(self._fd)
        self._lose(exc)

    def _fatal_error(self, exc: BaseException) -> None:
        if not isinstance(exc, OSError):
            self._loop.call_exception_handler(
                {
                    "message": "fatal error on a stamping transport",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc)

    def _lose(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._loop.call_soon(self._connection_lost, exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)  # type: ignore[arg-type]
        finally:
            # Unregister before closing: the descriptor number goes back to the OS for reuse.
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._sock.close()
            # The protocol refers to this transport: without the cycle, both go as soon as
            # the connection's last user drops them, not at the collector's next full pass.
            self._protocol = _NO_PROTOCOL


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


def _literal_address(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]] | None:
    """``host`` as a socket address if it is an IP literal: nothing to resolve."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, (host, port) if family == socket.AF_INET else (host, port, 0, 0))]
    return None


async def _connected_socket(host: str, port: int, local_address: str | None) -> socket.socket:
    """A connected, non-blocking TCP socket asking for receive timestamps.

    As ``loop.create_connection`` does it: IP literals are not resolved, a host name's
    addresses are tried in order, and one error is raised as it is (several are joined).
    """
    loop = asyncio.get_running_loop()
    addresses = _literal_address(host, port)
    if addresses is None:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [(family, address) for family, _, _, _, address in infos]
        if not addresses:
            raise OSError("getaddrinfo() returned empty list")
    errors: list[OSError] = []
    for family, address in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            receive_time.enable(sock)
            if local_address is not None:
                sock.bind((local_address, 0))
            await loop.sock_connect(sock, address)
        except OSError as err:
            sock.close()
            errors.append(err)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if len(errors) == 1 or len({str(err) for err in errors}) == 1:
        raise errors[0]
    raise OSError(f"Multiple exceptions: {', '.join(str(err) for err in errors)}")


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend interface over plain asyncio; ``now`` stamps in ns.

    ``kernel_stamps`` (default: where ``receive_time.available()``) reads TCP connections
    through ``_StampedSocketTransport``; without it, asyncio's own transport is used and
    arrivals are stamped when the loop delivers them.
    """

    def __init__(self, now: Callable[[], int], *, kernel_stamps: bool | None = None) -> None:
        self._now = now
        if kernel_stamps is None:
            kernel_stamps = receive_time.available()
        self._bridge = RealtimeBridge(now) if kernel_stamps else None

    @property
    def kernel_stamps(self) -> bool:
        """Whether TCP arrivals are stamped by the kernel (where it stamps them)."""
        return self._bridge is not None

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        wire = _started(self._now())
        assert wire.connect_started_ns is not None
        loop = asyncio.get_running_loop()
        try:
            if self._bridge is None:
                local = None if local_address is None else (local_address, 0)
                _, protocol = await _with_timeout(
                    loop.create_connection(
                        lambda: _StampingProtocol(self._now), host, port, local_addr=local
                    ),
                    timeout,
                    httpcore.ConnectTimeout,
                )
            else:
                sock = await _with_timeout(
                    _connected_socket(host, port, local_address), timeout, httpcore.ConnectTimeout
                )
                protocol = _StampingProtocol(self._now)
                try:
                    _StampedSocketTransport(
                        loop, sock, protocol, self._bridge, wire.connect_started_ns
                    )
                except OSError:  # reset between connect and now: no peer name to ask for
                    sock.close()
                    raise
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
