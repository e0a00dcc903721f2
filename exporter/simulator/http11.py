"""Just enough HTTP/1.1 for the simulator: one request per connection, framed by hand.

Writing the bytes ourselves (instead of using an HTTP framework) is what lets the simulator
hold back the status line and headers until the first chunk, as Ollama does, and fail in
ways a framework would not allow (an unterminated chunked body, a silent close).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
LAST_CHUNK = b"0\r\n\r\n"
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


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None = None
) -> Request | None:
    """Read one request; ``None`` if the client closed first, ``BadRequest`` if malformed.

    With ``writer``, ``Expect: 100-continue`` is answered before the body is read, as Go's
    server does; curl sends it for large bodies and would otherwise wait a second.
    """
    try:
        first = await reader.readexactly(1)
        if not first.isalpha():
            # Not a method: most likely a TLS ClientHello (0x16) from an https:// URL, which
            # may never contain a CRLF. Answer now, as Go does to garbage, so the client's
            # handshake fails at once instead of waiting for a ServerHello forever.
            raise BadRequest("malformed request line")
        head = first + await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest("request header too large", 431) from None
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("malformed request line")
    method, target, _ = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest("malformed header line")
        headers[name.lower()] = value.strip()
    raw_path, _, query = target.partition("?")
    if writer is not None and headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    try:
        body = await _read_body(reader, headers)
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest("malformed chunked body") from None
    return Request(method, unquote(raw_path), query, headers, body)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    raw = headers.get("content-length", "0")
    if not raw.isdigit():
        raise BadRequest("invalid Content-Length")
    length = int(raw)
    if length > MAX_BODY_BYTES:
        raise BadRequest("request body too large", 413)
    return await reader.readexactly(length)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        size_line = (await reader.readuntil(b"\r\n"))[:-2].split(b";")[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise BadRequest("malformed chunk size") from None
        if len(body) + size > MAX_BODY_BYTES:
            raise BadRequest("request body too large", 413)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # skip trailers
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise BadRequest("malformed chunk")


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    """Return the status line and headers, with ``Date`` and ``Connection: close`` added."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines += [f"Date: {formatdate(usegmt=True)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def full_response(status: int, content_type: str, body: bytes, *, head_only: bool = False) -> bytes:
    """Return a complete ``Content-Length`` response (headers only for ``HEAD``)."""
    head = response_head(
        status, [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    )
    return head if head_only else head + body


def stream_head() -> bytes:
    """Return the head of a 200 NDJSON stream; it is only ever sent with the first chunk."""
    return response_head(200, [("Content-Type", NDJSON), ("Transfer-Encoding", "chunked")])


def chunk(data: bytes) -> bytes:
    """Frame ``data`` as one HTTP chunk (so each NDJSON line is its own chunk, as in Ollama)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


async def write_all(writer: asyncio.StreamWriter, data: bytes) -> int:
    """Write and drain ``data``; return ``time.monotonic_ns()`` just after."""
    writer.write(data)
    await writer.drain()
    return time.monotonic_ns()
