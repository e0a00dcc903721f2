"""Hostile HTTP servers for the probe: raw bytes over loopback, in a thread of their own.

Each server runs its own event loop in its own thread, so a server that floods, drips or
hangs behaves like a remote machine: it never borrows the prober's event loop, and a prober
that stops yielding cannot slow the server down to a harmless pace.

The server reads one request per connection and hands it to a handler that writes whatever
bytes it likes. It then watches for the client to close its end: ``wait_released`` is how a
test proves the prober let go of every connection (no leaked socket, nothing left half-read).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

HERE = Path(__file__).parent
CERT_FILE = HERE / "selfsigned-cert.pem"
KEY_FILE = HERE / "selfsigned-key.pem"
MAX_REQUEST_HEAD = 64 * 1024
# How long a finished handler's connection waits for the client to close before giving up.
RELEASE_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Request, asyncio.StreamWriter], Coroutine[Any, Any, None]]


def tls_context() -> ssl.SSLContext:
    """A server context with the committed self-signed certificate (for 127.0.0.1 only)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT_FILE, KEY_FILE)
    return ctx


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, path, headers, body)


class HostileServer:
    """``with HostileServer(handler) as server:`` serves ``server.url`` until the block ends.

    Counters (read from the test thread; plain ints are safe under the GIL):
        accepted: connections accepted.
        released: connections that ended because the client closed (or reset) its end, or
            because the handler itself aborted the connection (``abort`` below).
    """

    def __init__(self, handler: Handler, *, tls: bool = False) -> None:
        self._handler = handler
        self._tls = tls
        self.accepted = 0
        self.released = 0
        self.requests: list[Request] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="hostile-server", daemon=True)
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("hostile server did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as err:  # surfaced to the test by __enter__
            self._error = err
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(
            self._connection,
            "127.0.0.1",
            0,
            ssl=tls_context() if self._tls else None,
            limit=MAX_REQUEST_HEAD,
        )
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        await self._stop.wait()
        server.close()
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Swallowed: asyncio's streams log a connection task that ends cancelled (the
        # server stopping with a connection open) as an error.
        with contextlib.suppress(asyncio.CancelledError):
            await self._exchange(reader, writer)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            request = await _read_request(reader)
            if request is None:
                self.released += 1
                return
            self.requests.append(request)
            handler = asyncio.create_task(self._handler(request, writer))
            client_gone = asyncio.create_task(_wait_eof(reader))
            await asyncio.wait({handler, client_gone}, return_when=asyncio.FIRST_COMPLETED)
            if not handler.done():
                handler.cancel()  # the client hung up on a handler still writing or waiting
            await asyncio.wait({handler})
            if not handler.cancelled():
                handler.exception()  # retrieved: a write to a vanished client is expected
            if writer.transport.is_closing() and not client_gone.done():
                client_gone.cancel()  # the handler closed or aborted the connection itself
                self.released += 1
                return
            if writer.can_write_eof():
                with contextlib.suppress(OSError):
                    writer.write_eof()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client_gone, RELEASE_WAIT_S)
            if client_gone.done():
                self.released += 1
        finally:
            writer.transport.abort()
            # Retrieve how the connection ended (a broken pipe, say): left unread, asyncio
            # logs it as an error when the future is collected.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), RELEASE_WAIT_S)

    async def wait_released(self, timeout: float = 10.0) -> None:
        """Until every accepted connection is released; fails the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.accepted == 0 or self.released < self.accepted:
            assert time.monotonic() < deadline, (
                f"connections not released: {self.accepted} accepted, {self.released} released"
            )
            await asyncio.sleep(0.02)


async def _wait_eof(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while await reader.read(65536):
            pass


# --- response building blocks -------------------------------------------------------------


def head(
    status: int = 200, headers: Iterable[tuple[str, str]] = (), *, chunked: bool = True
) -> bytes:
    """A status line and headers; ``Transfer-Encoding: chunked`` unless told otherwise."""
    lines = [f"HTTP/1.1 {status} X"]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    """One chunked-encoding frame (an empty one ends the body)."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"
NDJSON = ("Content-Type", "application/x-ndjson")


def line(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def text_line(text: str = "tok") -> bytes:
    return line(
        {"model": "m", "created_at": "2026-11-20T09:00:01Z", "response": text, "done": False}
    )


def done_line(**fields: Any) -> bytes:
    stats = {"eval_count": 3, "eval_duration": 3_000_000, "prompt_eval_count": 5,
             "prompt_eval_duration": 1_000_000, "load_duration": 100_000,
             "total_duration": 5_000_000}  # fmt: skip
    obj = {"model": "m", "created_at": "2026-11-20T09:00:02Z", "response": "", "done": True,
           "done_reason": "stop", **stats, **fields}  # fmt: skip
    return line(obj)


def stream(*lines: bytes, headers: Iterable[tuple[str, str]] = (NDJSON,)) -> bytes:
    """A complete chunked 200 NDJSON response, one frame per line."""
    return head(200, headers) + b"".join(chunk(x) for x in lines) + LAST_CHUNK


HEALTHY_STREAM = stream(text_line("a"), text_line("b"), text_line("c"), done_line())
VERSION = b'{"version":"0.15.6"}'


def fixed(status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A complete response with a Content-Length body."""
    all_headers = [("Content-Length", str(len(body))), *headers]
    return head(status, all_headers, chunked=False) + body


async def send(writer: asyncio.StreamWriter, data: bytes, block: int = 64 * 1024) -> None:
    """Write ``data`` a block at a time, waiting for the client to take each: the server
    never copies a large response into its own buffers (the tests measure the heap)."""
    view = memoryview(data)
    for start in range(0, len(view), block):
        writer.write(view[start : start + block])
        await writer.drain()


def canned(response: bytes) -> Handler:
    """A handler that sends ``response`` whatever the request."""

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        await send(writer, response)

    return handler


JSON = ("Content-Type", "application/json")
SSE = ("Content-Type", "text/event-stream")
NOTHING_LOADED = b'{"models":[]}'


def sse_event(obj: Any) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line."""
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def sse_text(content: str = "tok") -> bytes:
    delta = {"role": "assistant", "content": content}
    return sse_event({"object": "chat.completion.chunk",
                      "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})  # fmt: skip


SSE_USAGE = sse_event({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}})
SSE_DONE = b"data: [DONE]\n\n"
HEALTHY_SSE = stream(sse_text("a"), sse_text("b"), sse_text("c"), SSE_USAGE, SSE_DONE,
                     headers=(SSE,))  # fmt: skip


async def healthy(request: Request, writer: asyncio.StreamWriter) -> None:
    """A well-behaved Ollama: a short stream for generations (NDJSON, or server-sent events on
    /v1), a version for /api/version, no model loaded for /api/ps."""
    if request.path.endswith("/api/version"):
        await send(writer, fixed(200, VERSION, [JSON]))
    elif request.path.endswith("/api/ps"):
        await send(writer, fixed(200, NOTHING_LOADED, [JSON]))
    elif request.path.endswith("/v1/chat/completions"):
        await send(writer, HEALTHY_SSE)
    else:
        await send(writer, HEALTHY_STREAM)


def abort(writer: asyncio.StreamWriter) -> None:
    """Reset the connection (RST, not FIN): SO_LINGER 0, then close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# --- hostile behaviours shared by several tests (module level: picklable for RemoteServers)


async def flood(request: Request, writer: asyncio.StreamWriter, *, block: bytes) -> None:
    """A chunked 200 whose body is ``block`` over and over, as fast as the client reads."""
    writer.write(head(200, [NDJSON]))
    frame = chunk(block)
    for _ in range(10**10 // len(block)):
        writer.write(frame)
        await writer.drain()


async def drip_headers(request: Request, writer: asyncio.StreamWriter) -> None:
    """A header line that never ends, a byte at a time: no response ever arrives."""
    writer.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
    for _ in range(10_000):
        writer.write(b"a")
        await writer.drain()
        await asyncio.sleep(0.02)


async def hang(request: Request, writer: asyncio.StreamWriter) -> None:
    """Read the request, then say nothing at all."""
    await asyncio.sleep(3600)
