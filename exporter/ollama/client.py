"""The only module that imports the HTTP library: one streaming client per Ollama target.

Choices that keep the numbers right (see the README's "Measurement" section):
- ``trust_env=False``: an ``HTTP_PROXY`` picked up from the environment could buffer the
  stream and change TTFT, so proxy and CA come from config only;
- no keep-alive: every probe opens a fresh connection, so TTFT always includes connect,
  whatever the interval;
- ``Accept-Encoding: identity``, and a response with any other ``Content-Encoding`` is refused,
  never decoded: compressing proxies batch chunks, and a few kilobytes of gzip can inflate to
  gigabytes. Bodies are read raw, as the socket delivers them;
- no read timeout: Ollama sends nothing, not even headers, until the first token, so a cold
  load is a silent connection for minutes. The prober enforces ``timeout`` and
  ``stall_timeout`` itself, around the whole exchange.

Every error the HTTP library raises leaves this module as a ``TransportFailure`` carrying its
one ``Reason``, decided with what the transport saw (``WireLog``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from exporter import __version__
from exporter.clock import Clock, SystemClock
from exporter.config import Target
from exporter.config.models import MAX_PARALLEL
from exporter.ollama.errors import ERROR_BODY_LIMIT, classify_status
from exporter.ollama.network import AsyncioBackend, WireLog, recording
from exporter.result import Reason, shorten

CONNECT_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 10.0
POOL_TIMEOUT_S = 5.0
VERSION_TIMEOUT_S = 5.0
VERSION_BODY_LIMIT = 4096
VERSION_MAX_CHARS = 80
# /api/ps lists the loaded models, a few hundred bytes each: 1 MiB is thousands of them.
PS_BODY_LIMIT = 1024 * 1024
# Body parts read between two passes of the event loop (see ``_raw_parts``). An Ollama
# stream brings one part per token, so a pass every few dozen costs nothing.
PARTS_PER_PASS = 64


class TransportFailure(Exception):
    """The exchange failed because of what the server did (or did not) send."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What ``/api/version`` says: the version string and the ``Server`` header, both cut short."""

    version: str
    server: str = ""

    @property
    def is_simulator(self) -> bool:
        """The exporter's own simulator answers ``0.0.0-simulator`` with a ``Server`` header
        naming it: its numbers are synthetic, which an operator should know."""
        return "simulator" in self.version.lower() or "simulator" in self.server.lower()


# What ``OllamaClient.prepare`` builds and ``open_stream`` sends: opaque to the prober.
PreparedRequest = httpx.Request


def refused_encoding(headers: httpx.Headers) -> str | None:
    """The ``Content-Encoding`` of a response, unless it is absent or ``identity``."""
    codings = [c.strip().lower() for c in headers.get_list("content-encoding", split_commas=True)]
    refused = [c for c in codings if c not in ("", "identity")]
    return ", ".join(refused) if refused else None


async def _raw_parts(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as httpx hands it over, undecoded, giving the event loop a pass every
    ``PARTS_PER_PASS`` parts.

    Each HTTP chunk frame is a part of its own, and the frames of one socket read are handed
    over without a single wait: a read of 64 KiB in 6-byte frames is some 11,000 parts, a
    few hundred milliseconds in which no other probe and no deadline would run.
    """
    parts = 0
    async for part in response.aiter_raw():
        yield part
        parts += 1
        if parts == PARTS_PER_PASS:
            parts = 0
            await asyncio.sleep(0)


async def _read_raw(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the body, undecoded; the rest is left unread."""
    data = bytearray()
    async for part in _raw_parts(response):
        data += part[: limit - len(data)]
        if len(data) >= limit:
            break
    return bytes(data)


class StreamResponse:
    """A response whose body is read raw, read by read, by the prober only."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    def header(self, name: str) -> str:
        return str(self._response.headers.get(name, ""))

    @property
    def refused_encoding(self) -> str | None:
        """A ``Content-Encoding`` other than identity, which the prober refuses to read."""
        return refused_encoding(self._response.headers)

    def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as each socket read returns them, never decoded."""
        return _raw_parts(self._response)

    async def read_limited(self, limit: int) -> bytes:
        """At most ``limit`` bytes of the body: enough to classify an error response."""
        return await _read_raw(self._response, limit)


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """The CA bundle httpx verifies against by default (certifi's), loaded once per process.

    httpx loads it afresh for every transport, even for http:// targets: 40-150 ms of work
    that blocks the event loop, so a reload creating a few clients would stall every probe
    in flight and land in their timings. A context is safe to share between connections.
    """
    return httpx.create_ssl_context(trust_env=False)


def _ssl_verify(target: Target) -> ssl.SSLContext | bool:
    if target.url.startswith("http://"):
        return _default_tls()  # no TLS at all: the tls settings are ignored, as config says
    if target.tls.insecure_skip_verify:
        return False
    if target.tls.ca_file is not None:
        # Loaded per client: a reload after the file changed must see the new one.
        return ssl.create_default_context(cafile=str(target.tls.ca_file))
    return _default_tls()


def lean_transport(target: Target, clock: Clock) -> httpx.AsyncHTTPTransport:
    """httpx's transport with the target's TLS, proxy and pool, over ``AsyncioBackend``.

    httpx has no argument for httpcore's ``network_backend``, so it is set on the pool the
    transport built; ``tests/ollama/test_client.py`` fails if httpx stops honouring it.
    """
    # Every run in flight may open MAX_PARALLEL connections at once, and /api/version or
    # /api/ps one more: a run must never wait for the pool (that wait would be in TTFT).
    connections = target.concurrency * MAX_PARALLEL + 1
    transport = httpx.AsyncHTTPTransport(
        verify=_ssl_verify(target),
        proxy=target.proxy,
        trust_env=False,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=0),
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
        """``transport`` replaces the lean one (the benchmark compares httpx's own); without
        ``AsyncioBackend`` the prober falls back to its own, later, timestamps."""
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

    def prepare(self, path: str, body: bytes) -> PreparedRequest:
        """Build a JSON POST to ``path`` (relative to the target URL, path prefix kept)."""
        return self._client.build_request(
            "POST", path.lstrip("/"), content=body, headers={"Content-Type": "application/json"}
        )

    @asynccontextmanager
    async def open_stream(
        self, request: PreparedRequest, wire: WireLog
    ) -> AsyncIterator[StreamResponse]:
        """Send the request; yield once the status line and headers are in; always close.

        ``wire`` receives the transport's stamps and observations. An HTTP error, while
        sending or while the body is read inside the block, becomes a ``TransportFailure``.
        """
        with recording(wire):
            try:
                response = await self._client.send(request, stream=True)
            except httpx.HTTPError as err:
                raise TransportFailure(*classify_exception(err, wire)) from err
            try:
                yield StreamResponse(response)
            except httpx.HTTPError as err:
                raise TransportFailure(*classify_exception(err, wire, responded=True)) from err
            finally:
                await response.aclose()

    async def version(self, timeout: float = VERSION_TIMEOUT_S) -> ServerInfo:
        """``GET /api/version``: a cheap request that warms the client and names the server.

        Bounded like a probe: ``timeout`` for the whole exchange (``TimeoutError``), a few KiB
        of body, no decoding. Any other failure is a ``TransportFailure``.
        """
        body, server = await self._get("api/version", timeout, VERSION_BODY_LIMIT)
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError) as err:
            raise TransportFailure(Reason.INVALID_RESPONSE, "/api/version: not JSON") from err
        version = obj.get("version") if isinstance(obj, dict) else None
        return ServerInfo(
            shorten(str(version or "unknown"), VERSION_MAX_CHARS),
            shorten(server, VERSION_MAX_CHARS),
        )

    async def running_models(self, timeout: float) -> bytes:
        """``GET /api/ps``, the body undecoded: the models Ollama has loaded right now.

        Bounded like ``version``: ``timeout`` for the whole exchange (``TimeoutError``), at most
        ``PS_BODY_LIMIT`` bytes (a longer body is refused, not cut), no decoding; any other
        failure is a ``TransportFailure``.
        """
        body, _ = await self._get("api/ps", timeout, PS_BODY_LIMIT + 1)
        if len(body) > PS_BODY_LIMIT:
            raise TransportFailure(Reason.INVALID_RESPONSE, f"over {PS_BODY_LIMIT} bytes")
        return body

    async def _get(self, path: str, timeout: float, limit: int) -> tuple[bytes, str]:
        """``GET path``: at most ``limit`` bytes of a 200's body, undecoded, and its ``Server``
        header, all within ``timeout`` (``TimeoutError``). A refused encoding or another
        status is a ``TransportFailure``; an error body is read as little as a probe's is."""
        request = self._client.build_request("GET", path)
        async with asyncio.timeout(timeout), self.open_stream(request, WireLog()) as response:
            encoding = response.refused_encoding
            if encoding is not None:
                raise TransportFailure(Reason.INVALID_RESPONSE, f"Content-Encoding {encoding}")
            if response.status != 200:
                body = await response.read_limited(min(limit, ERROR_BODY_LIMIT))
                raise TransportFailure(*classify_status(response.status, body))
            return await response.read_limited(limit), response.header("server")

    async def aclose(self) -> None:
        await self._client.aclose()


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _looks_like_http(head: bytes) -> bool:
    return head[:5] == b"HTTP/"[: len(head[:5])]


def _protocol_reason(detail: str, wire: WireLog | None, *, responded: bool) -> tuple[Reason, str]:
    if wire is None or not wire.eof:
        return Reason.INVALID_RESPONSE, detail
    if not responded and wire.received and not _looks_like_http(wire.head):
        return Reason.INVALID_RESPONSE, f"not an HTTP response: {wire.head!r}…"
    return Reason.TRUNCATED, detail


def classify_exception(
    exc: BaseException, wire: WireLog | None = None, *, responded: bool = False
) -> tuple[Reason, str]:
    """The reason for an exception raised while talking to the server.

    A TLS failure surfaces as ``httpx.ConnectError`` with an ``ssl.SSLError`` somewhere in
    its cause chain. ``RemoteProtocolError`` means two different things, told apart by
    ``wire``: raised after the peer closed the connection, it is a close before ``done``
    (``truncated``), before or after the status line; raised while the connection was still
    open, the server's own bytes broke HTTP/1.1 (bad chunk framing, a header too large to
    hold, an unrequested ``101``), which is ``invalid_response``. So is a close after bytes
    that were never HTTP at all, such as a TLS alert from a TLS port spoken to in plain
    HTTP. A reset is a close (``truncated``). ``responded`` says whether the status line and
    headers had arrived.
    """
    detail = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    if any(isinstance(e, ssl.SSLError) for e in _chain(exc)):
        return Reason.TLS_ERROR, detail
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError):
        return Reason.CONNECT_ERROR, detail
    if isinstance(exc, httpx.PoolTimeout):
        return Reason.CONNECT_ERROR, f"{detail} (connection pool exhausted)"
    if isinstance(exc, httpx.ProtocolError):
        return _protocol_reason(detail, wire, responded=responded)
    if isinstance(exc, httpx.TransportError):
        # ReadError, WriteError (a reset), a read or write timeout: the exchange broke off.
        return Reason.TRUNCATED, detail
    # DecodingError and the rest: an answer the HTTP library could not make sense of.
    return Reason.INVALID_RESPONSE, detail
