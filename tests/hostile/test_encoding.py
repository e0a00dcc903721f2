"""Compressed bodies are refused, never decoded: the exporter asks for ``identity``.

A gzip body of newlines inflates a thousandfold (10 MB on the wire, 10 GB decoded), and a
stacked ``gzip, gzip`` one a millionfold: decoding either froze the event loop or exhausted
memory. The bombs below are real; only a prober that decodes them would notice.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest

from exporter.result import Reason
from tests.hostile.probing import MIB, peak_memory, probe
from tests.hostile.server import (
    NDJSON,
    HostileServer,
    Request,
    chunk,
    done_line,
    head,
    stream,
    text_line,
)

GZIP_HEADER = bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF])


def _newline_block(size: int = MIB) -> bytes:
    """Raw deflate data for ``size`` newlines, ending in a full flush: no back-references
    cross the block, so it can be repeated to build a deflate stream of any length."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(b"\n" * size) + compressor.flush(zlib.Z_FULL_FLUSH)


BLOCK = _newline_block()


def gzip_bomb_handler(encoding: str, body_prefix: bytes, repeat: bytes, times: int):
    """A 200 with ``Content-Encoding: encoding`` whose body is ``body_prefix`` then ``repeat``
    ``times`` times, as fast as the client takes it."""

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, [NDJSON, ("Content-Encoding", encoding)]) + chunk(body_prefix))
        frame = chunk(repeat * 64)
        for _ in range(times // 64):
            writer.write(frame)
            await writer.drain()

    return handler


async def test_gzip_bomb_is_refused_not_decoded() -> None:
    """10 MB of gzip that decodes to 10 GB of newlines: refused at the headers."""
    assert len(BLOCK) < 2048  # the ratio that makes it a bomb: 1 MiB in under 2 KiB
    handler = gzip_bomb_handler("gzip", GZIP_HEADER, BLOCK, 10_240)
    with HostileServer(handler) as server, peak_memory() as peak:
        result = await probe(server.url)
        await server.wait_released()
    assert result.reason is Reason.INVALID_RESPONSE, result.detail
    assert "gzip" in result.detail
    assert result.http_status == 200
    assert peak.bytes < 16 * MIB, peak.bytes


async def test_stacked_gzip_is_refused_not_decoded() -> None:
    """``Content-Encoding: gzip, gzip``, a few KB that would decode to gigabytes."""
    inner = GZIP_HEADER + BLOCK * 2048  # 2 GiB of newlines, in about 2 MiB
    outer = gzip.compress(inner, 9)
    assert len(outer) < 64 * 1024

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        headers = [NDJSON, ("Content-Encoding", "gzip, gzip")]
        writer.write(head(200, headers) + chunk(outer) + b"0\r\n\r\n")

    with HostileServer(handler) as server, peak_memory() as peak:
        result = await probe(server.url)
        await server.wait_released()
    assert result.reason is Reason.INVALID_RESPONSE, result.detail
    assert "gzip, gzip" in result.detail
    assert peak.bytes < 16 * MIB, peak.bytes


@pytest.mark.parametrize(
    ("status", "encodings"),
    [
        (200, ["deflate"]),
        (200, ["br"]),
        (200, ["identity", "gzip"]),  # two header lines
        (503, ["gzip"]),  # refused outright, whatever the status
        (404, ["gzip"]),
    ],
)
async def test_any_encoding_but_identity_is_refused(status: int, encodings: list[str]) -> None:
    """Every coding other than identity is refused, on any status, before the body is read."""

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        headers = [NDJSON, *(("Content-Encoding", e) for e in encodings)]
        writer.write(head(status, headers) + chunk(b"\x1f\x8b not really gzip") + b"0\r\n\r\n")

    with HostileServer(handler) as server:
        result = await probe(server.url)
        await server.wait_released()
    assert result.reason is Reason.INVALID_RESPONSE, result.detail
    assert result.http_status == status
    assert encodings[-1] in result.detail


async def test_identity_is_accepted() -> None:
    """An explicit ``Content-Encoding: identity`` is what was asked for: the probe succeeds."""
    body = stream(
        text_line("a"),
        text_line("b"),
        done_line(),
        headers=[NDJSON, ("Content-Encoding", "identity")],
    )

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(body)

    with HostileServer(handler) as server:
        result = await probe(server.url)
        await server.wait_released()
    assert result.success, result.detail
    assert server.requests[0].headers["accept-encoding"] == "identity"
