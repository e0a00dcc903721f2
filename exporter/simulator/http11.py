"""HTTP/1.1 for the simulator: h11 parses requests, the simulator decides when bytes leave.

h11 turns bytes into requests and responses into bytes but never touches the socket. That
is what lets the simulator hold the status line and headers back until the first chunk (as
Ollama does), write each chunk at its scripted time, and for faults write what h11 would
not produce (a body cut short) or close without answering. A connection serves requests one
after another (keep-alive) until the client, HTTP/1.0 or a fault ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import h11

from exporter import __version__

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
RECEIVE_BYTES = 64 * 1024
_DRAIN_TIMEOUT_S = 0.5
SERVER = f"ollama-probe-exporter-simulator/{__version__}"
TEXT_PLAIN = "text/plain; charset=utf-8"
JSON_UTF8 = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson"


class BadRequest(Exception):
    """A request the simulator cannot parse; answered with ``status`` and a plain message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request. ``path`` is URL-decoded; header names are lower-cased."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class RecordedRequest:
    """What the simulator saw and when it answered; times are ``time.monotonic_ns()``.

    Fields:
        method, path, headers (lower-cased names), body (parsed JSON, or None when the body
            was empty or not JSON).
        received_ns: when the request body had been fully read.
        first_write_ns: just after the first response bytes were handed to the transport (for
            streams: status line, headers and first chunk together); None if nothing was sent.
        text_write_ns: just after each text (or thinking) chunk was handed to the transport.
        done_write_ns: just after the done chunk (or the single non-streamed body) was written.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_ns: int
    first_write_ns: int | None = None
    text_write_ns: list[int] = field(default_factory=list)
    done_write_ns: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the record as JSON-ready data (the control API's answer)."""
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
            "received_ns": self.received_ns,
            "first_write_ns": self.first_write_ns,
            "text_write_ns": list(self.text_write_ns),
            "done_write_ns": self.done_write_ns,
        }


class HttpConnection:
    """One client connection: ``next_request`` reads, the builders return bytes, ``write`` sends.

    Building a response (``head``, ``data``, ``end``, ``full``) only advances h11's state, so
    the bytes can be prepared before a scripted wait and written the moment it ends.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._head_only = False
        self._eof = False

    async def next_request(self) -> Request | None:
        """Read one request; None if the client closed first, ``BadRequest`` if malformed.

        ``Expect: 100-continue`` is answered before the body is read, as Go's server does;
        curl sends it for large bodies and would otherwise wait a second.
        """
        start: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                if self._eof:
                    return None  # closed mid-request: nobody to answer
                raise BadRequest(str(exc), exc.error_status_hint) from None
            if event is h11.NEED_DATA:
                await self._receive()
            elif isinstance(event, h11.Request):
                start = event
                if self._h11.they_are_waiting_for_100_continue:
                    info = h11.InformationalResponse(
                        status_code=100, headers=[], reason=b"Continue"
                    )
                    await self.write(self._send(info))
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY_BYTES:
                    raise BadRequest("request body too large", 413)
            elif isinstance(event, h11.EndOfMessage) and start is not None:
                return self._request(start, bytes(body))
            else:  # ConnectionClosed: the client left between requests
                return None

    async def _receive(self) -> None:
        data = await self._reader.read(RECEIVE_BYTES)
        idle = self._h11.their_state is h11.IDLE and not self._h11.trailing_data[0]
        if idle and data and not data[:1].isalpha():
            # Not a method: most likely a TLS ClientHello (0x16) from an https:// URL, which
            # may never contain a CRLF. Answer now, as Go does to garbage, so the client's
            # handshake fails at once instead of waiting for a ServerHello forever.
            raise BadRequest("malformed request line")
        self._eof = not data
        self._h11.receive_data(data)

    async def client_gone(self) -> None:
        """Return once the client has closed the connection (while a response is under way).

        Bytes that arrive meanwhile (a pipelined request) are kept for ``next_request``, up to
        ``MAX_HEAD_BYTES``: then nothing more is read until the response ends (Go's server
        reads ahead one byte), so a client cannot make the simulator buffer without bound.
        """
        kept = 0
        with contextlib.suppress(ConnectionError):
            while data := await self._reader.read(RECEIVE_BYTES):
                self._h11.receive_data(data)
                kept += len(data)
                if kept >= MAX_HEAD_BYTES:
                    await asyncio.Event().wait()  # until the finished response cancels us
        self._eof = True
        self._h11.receive_data(b"")

    def _request(self, start: h11.Request, body: bytes) -> Request:
        method = start.method.decode("ascii")
        self._head_only = method == "HEAD"
        raw_path, _, query = start.target.decode("ascii", "replace").partition("?")
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in start.headers}
        return Request(method, unquote(raw_path), query, headers, body)

    def _send(self, event: h11.Event) -> bytes:
        return self._h11.send(event) or b""

    def head(self, status: int, content_type: str, length: int | None = None) -> bytes:
        """Return the status line and headers; without ``length`` the body is chunked."""
        headers = [("Content-Type", content_type)]
        if length is not None:
            headers.append(("Content-Length", str(length)))
        headers += [("Date", formatdate(usegmt=True)), ("Server", SERVER)]
        reason = HTTPStatus(status).phrase.encode()
        return self._send(h11.Response(status_code=status, headers=headers, reason=reason))

    def data(self, payload: bytes) -> bytes:
        """Return ``payload`` framed as one chunk (so each NDJSON line is its own chunk)."""
        return self._send(h11.Data(data=payload))

    def end(self) -> bytes:
        """Return the end of the body (the zero-length chunk when chunked)."""
        return self._send(h11.EndOfMessage())

    def full(self, status: int, content_type: str, body: bytes) -> bytes:
        """Return a complete ``Content-Length`` response (headers only for ``HEAD``)."""
        head = self.head(status, content_type, len(body))
        return head + (b"" if self._head_only else self.data(body)) + self.end()

    async def write(self, data: bytes) -> int:
        """Write and drain ``data``; return ``time.monotonic_ns()`` just after."""
        self._writer.write(data)
        await self._writer.drain()
        return time.monotonic_ns()

    async def refuse(self, status: int, message: str) -> None:
        """Answer a request that could not be parsed, then close without a reset.

        The client may still be sending (an oversized head): closing with unread input would
        reset the connection and could destroy the answer before it is read, so the input
        is drained for a moment after the write side is shut, as Go's server does.
        """
        await self.write(error_response(status, message))
        self._writer.write_eof()
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(_DRAIN_TIMEOUT_S):
                while await self._reader.read(RECEIVE_BYTES):
                    pass

    def abort(self) -> None:
        """Drop the connection at once, without ending the body."""
        self._writer.transport.abort()

    def next_cycle(self) -> bool:
        """Get ready for the next request on this connection; False if it must close."""
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            return True
        return False


def error_response(status: int, message: str) -> bytes:
    """Return a plain-text answer to a request h11 could not parse; the connection closes."""
    body = message.encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"Content-Type: {TEXT_PLAIN}",
        f"Content-Length: {len(body)}",
        f"Date: {formatdate(usegmt=True)}",
        f"Server: {SERVER}",
        "Connection: close",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("latin-1") + body
