"""A lean asyncio network backend for httpcore, so the client adds little to TTFT.

httpx reaches the network through httpcore's AnyIO backend. Its ``connect_tcp`` resolves
even an IP literal with ``getaddrinfo`` in a worker thread and connects inside a task group
(happy eyeballs), and every read passes a cancel scope. On a loaded 2-core machine that
added 3-10 ms between ``t0`` and the request reaching the server, and about 1 ms between
the first chunk's arrival and our timestamp (see ``benchmarks/client_overhead.py``). TTFT must
include connect and DNS, but not our own overhead.

This backend uses asyncio streams directly: ``asyncio.open_connection`` skips resolution for
IP literals and resolves host names as usual; timeouts and errors map onto httpcore's
exceptions exactly as the AnyIO backend maps them, so httpx's error types are unchanged
(a TLS failure is still ``ConnectError`` caused by ``ssl.SSLError``).

It also timestamps, with the injected clock, the start of each connection (before DNS, TCP
and TLS: the contract's ``t0``) and the return of each socket read (when bytes arrived,
before HTTP parsing), which the prober reads through httpx's ``network_stream`` extension.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpcore

CLOSE_WAIT_S = 1.0

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


async def _with_timeout(coro: Any, timeout: float | None, exc: type[Exception]) -> Any:
    try:
        async with asyncio.timeout(timeout):
            return await coro
    except TimeoutError as err:
        raise exc(str(err) or "timed out") from err


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection as asyncio reader/writer streams."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        now: Callable[[], int],
        connect_started_ns: int,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._now = now
        self.connect_started_ns = connect_started_ns
        self.last_read_ns: int | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            data: bytes = await _with_timeout(
                self._reader.read(max_bytes), timeout, httpcore.ReadTimeout
            )
        except OSError as err:
            raise httpcore.ReadError(str(err)) from err
        self.last_read_ns = self._now()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            await _with_timeout(self._writer.drain(), timeout, httpcore.WriteTimeout)
        except OSError as err:
            raise httpcore.WriteError(str(err)) from err

    async def aclose(self) -> None:
        self._writer.close()
        # wait_closed() can wait forever on a transport a failed TLS handshake left behind;
        # the socket is closed (or aborted below) either way.
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self._writer.wait_closed()
        except (OSError, ssl.SSLError, TimeoutError):
            self._writer.transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            await _with_timeout(
                self._writer.start_tls(ssl_context, server_hostname=server_hostname),
                timeout,
                httpcore.ConnectTimeout,
            )
        except (OSError, ssl.SSLError) as err:
            self._writer.transport.abort()
            raise httpcore.ConnectError(str(err)) from err
        except httpcore.ConnectTimeout:
            self._writer.transport.abort()
            raise
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "is_readable":
            # Only asked before reusing a kept-alive connection: at EOF it is "readable".
            return self._reader.at_eof() or self._writer.is_closing()
        return None


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
        started = self._now()
        local = None if local_address is None else (local_address, 0)
        try:
            reader, writer = await _with_timeout(
                asyncio.open_connection(host, port, local_addr=local),
                timeout,
                httpcore.ConnectTimeout,
            )
        except OSError as err:
            raise httpcore.ConnectError(str(err)) from err
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(reader, writer, self._now, started)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        started = self._now()
        try:
            reader, writer = await _with_timeout(
                asyncio.open_unix_connection(path), timeout, httpcore.ConnectTimeout
            )
        except OSError as err:
            raise httpcore.ConnectError(str(err)) from err
        return AsyncioStream(reader, writer, self._now, started)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
