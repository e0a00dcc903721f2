"""Clients for the simulator's tests: cheap httpx clients and raw-socket exchanges."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import httpx

# httpx's default client loads the CA bundle, ~0.2 s per client on a busy box; these tests
# only speak plain HTTP to loopback, so every client shares one context without certificates.
NO_CERTS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def http_client(base_url: str = "", **kwargs: Any) -> httpx.AsyncClient:
    """Return an httpx client for the simulator that skips loading certificates."""
    return httpx.AsyncClient(base_url=base_url, verify=NO_CERTS, **kwargs)


def raw_post(path: str, body: dict[str, Any], *, close: bool = True) -> bytes:
    """Return a raw HTTP/1.1 POST of ``body`` as JSON (``Connection: close`` by default)."""
    data = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n%b" % (len(data), data)


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    await writer.wait_closed()
    return data


def decode_chunks(body: bytes) -> list[bytes]:
    """Split a chunked body into its chunks' data; asserts the zero-length terminator."""
    chunks: list[bytes] = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n"
            return chunks
        chunks.append(body[:size])
        assert body[size : size + 2] == b"\r\n"
        body = body[size + 2 :]
