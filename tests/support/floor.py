"""The bare-protocol floor: the least any Python asyncio client can measure as TTFT here.

The request bytes are built in advance and written the moment the connection is made, and
the first response bytes are stamped in ``data_received``: no HTTP library, no parsing. What
it measures beyond the server's scripted delay is what this machine costs right now (connect,
the kernel's loopback, process wake-ups), so a test that probes the same stream with the
exporter and with this floor, interleaved, can hold the exporter to "floor + a small margin"
however loaded the machine is; the benchmark prints the same floor beside its numbers.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit


class _FloorProtocol(asyncio.Protocol):
    def __init__(self, request: bytes, first: asyncio.Future[int], done: asyncio.Future[None]):
        self._request = request
        self._first = first
        self._done = done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if not self._first.done():
            self._first.set_result(time.monotonic_ns())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._first.done():
            self._first.set_exception(exc or ConnectionError("closed before any response byte"))
        if not self._done.done():
            self._done.set_result(None)


def floor_request(url: str, model: str, *, api: str = "generate", tokens: int = 2) -> bytes:
    """An HTTP/1.1 streaming request for ``model`` that asks for ``tokens`` tokens."""
    parts = urlsplit(url)
    payload: dict[str, object] = {"model": model, "options": {"num_predict": tokens}}
    path = f"/api/{api}"
    if api == "openai":
        path = "/v1/chat/completions"
        payload = {"model": model, "stream": True, "max_tokens": tokens,
                   "messages": [{"role": "user", "content": "floor"}]}  # fmt: skip
    elif api == "chat":
        payload["messages"] = [{"role": "user", "content": "floor"}]
    else:
        payload["prompt"] = "floor"
    body = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


async def floor_ttft_ns(url: str, model: str, *, api: str = "generate", tokens: int = 2) -> int:
    """Connect start to the first response bytes, in ns; waits for the stream to end.

    Fails, rather than waits forever, if the server closes first or stays silent for 60 s."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    loop = asyncio.get_running_loop()
    first: asyncio.Future[int] = loop.create_future()
    done: asyncio.Future[None] = loop.create_future()
    request = floor_request(url, model, api=api, tokens=tokens)
    t0 = time.monotonic_ns()
    transport, _ = await loop.create_connection(
        lambda: _FloorProtocol(request, first, done), parts.hostname, parts.port
    )
    try:
        async with asyncio.timeout(60):
            ttft = await first - t0
            await done  # the server closes after the short stream: nothing is left in flight
    finally:
        transport.close()
    return ttft
