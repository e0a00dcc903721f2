"""The only module that imports the HTTP library: one streaming client per Ollama target.

Choices that keep the numbers right (see the README's "Measurement" section):
- ``trust_env=False``: an ``HTTP_PROXY`` picked up from the environment could buffer the
  stream and change TTFT, so proxy and CA come from config only;
- no keep-alive: every probe opens a fresh connection, so TTFT always includes connect,
  whatever the interval;
- ``Accept-Encoding: identity``: compressing proxies batch chunks;
- no read timeout: Ollama sends nothing, not even headers, until the first token, so a cold
  load is a silent connection for minutes. The prober enforces ``timeout`` and
  ``stall_timeout`` itself, around the whole exchange.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from exporter import __version__
from exporter.clock import Clock, SystemClock
from exporter.config import Target
from exporter.ollama.network import AsyncioBackend, AsyncioStream
from exporter.result import Reason

CONNECT_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 10.0
POOL_TIMEOUT_S = 5.0
VERSION_TIMEOUT_S = 5.0


class StreamResponse:
    """A response whose body is read as it arrives, read by the prober only."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        stream = response.extensions.get("network_stream")
        self._stream = stream if isinstance(stream, AsyncioStream) else None

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def connect_started_ns(self) -> int | None:
        """When this connection began (before DNS/TCP/TLS), if the transport recorded it."""
        return None if self._stream is None else self._stream.connect_started_ns

    def arrival_ns(self) -> int | None:
        """When the socket read behind the latest body bytes returned, if recorded."""
        return None if self._stream is None else self._stream.last_read_ns

    def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as each read returns them (Content-Encoding decoded, if any)."""
        return self._response.aiter_bytes()

    async def read_limited(self, limit: int) -> bytes:
        """At most ``limit`` bytes of the body: enough to classify an error response."""
        data = bytearray()
        async for part in self._response.aiter_bytes():
            data += part
            if len(data) >= limit:
                break
        return bytes(data[:limit])


def _ssl_verify(target: Target) -> ssl.SSLContext | bool:
    if target.tls.insecure_skip_verify:
        return False
    if target.tls.ca_file is not None:
        return ssl.create_default_context(cafile=str(target.tls.ca_file))
    return True


def lean_transport(target: Target, clock: Clock) -> httpx.AsyncHTTPTransport:
    """httpx's transport with the target's TLS, proxy and pool, over ``AsyncioBackend``.

    httpx has no argument for httpcore's ``network_backend``, so it is set on the pool the
    transport built; ``tests/ollama/test_client.py`` fails if httpx stops honouring it.
    """
    transport = httpx.AsyncHTTPTransport(
        verify=_ssl_verify(target),
        proxy=target.proxy,
        trust_env=False,
        limits=httpx.Limits(max_connections=target.concurrency + 1, max_keepalive_connections=0),
    )
    transport._pool._network_backend = AsyncioBackend(clock.monotonic_ns)  # no public hook
    return transport


class OllamaClient:
    """HTTP access to one Ollama target, with the connection policy described above."""

    def __init__(
        self,
        target: Target,
        *,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.target = target
        headers = {
            "Accept-Encoding": "identity",
            "User-Agent": f"ollama-probe-exporter/{__version__}",
            **target.header_values(),
        }
        self._client = httpx.AsyncClient(
            base_url=target.url,
            headers=headers,
            timeout=httpx.Timeout(
                connect=CONNECT_TIMEOUT_S, read=None, write=WRITE_TIMEOUT_S, pool=POOL_TIMEOUT_S
            ),
            trust_env=False,
            transport=transport or lean_transport(target, clock or SystemClock()),
        )

    def prepare(self, path: str, body: bytes) -> httpx.Request:
        """Build a JSON POST to ``path`` (relative to the target URL, path prefix kept)."""
        return self._client.build_request(
            "POST", path.lstrip("/"), content=body, headers={"Content-Type": "application/json"}
        )

    @asynccontextmanager
    async def open_stream(self, request: httpx.Request) -> AsyncIterator[StreamResponse]:
        """Send the request; yield once the status line and headers are in; always close."""
        response = await self._client.send(request, stream=True)
        try:
            yield StreamResponse(response)
        finally:
            await response.aclose()

    def classify(self, exc: BaseException) -> tuple[Reason, str]:
        return classify_exception(exc)

    async def version(self) -> str:
        """``GET /api/version``: a cheap request that warms the client and names the server."""
        response = await self._client.get("api/version", timeout=VERSION_TIMEOUT_S)
        response.raise_for_status()
        return str(response.json().get("version", "unknown"))

    async def aclose(self) -> None:
        await self._client.aclose()


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify_exception(exc: BaseException) -> tuple[Reason, str]:
    """The reason for an exception raised while talking to the server.

    A TLS failure surfaces as ``httpx.ConnectError`` with an ``ssl.SSLError`` somewhere in
    its cause chain. A server that closes the connection early raises
    ``RemoteProtocolError``, before the status line ("Server disconnected without sending a
    response") or after it ("incomplete chunked read"): both are ``truncated``, the contract's
    reason for a close before ``done: true``.
    """
    detail = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    if any(isinstance(e, ssl.SSLError) for e in _chain(exc)):
        return Reason.TLS_ERROR, detail
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError):
        return Reason.CONNECT_ERROR, detail
    if isinstance(exc, httpx.PoolTimeout):
        return Reason.CONNECT_ERROR, f"{detail} (connection pool exhausted)"
    if isinstance(exc, httpx.DecodingError):
        return Reason.INVALID_RESPONSE, detail
    if isinstance(exc, httpx.TransportError):
        # RemoteProtocolError, ReadError, WriteError, …: the exchange broke off mid-way.
        return Reason.TRUNCATED, detail
    return Reason.HTTP_ERROR, detail
