"""What a server's bytes can do to HTTP and NDJSON, and the one reason each earns.

``truncated`` means the server closed (or reset) the connection before ``done``. Bytes that
break HTTP/1.1 or are not HTTP at all are ``invalid_response``; a failed handshake is
``tls_error``; a status is ``http_error`` unless it names a model missing or a busy server.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from exporter.ollama import stream as stream_module
from exporter.result import Reason
from tests.hostile.probing import SMALL_PEAK, peak_memory, probe, probe_hostile
from tests.hostile.server import (
    NDJSON,
    Handler,
    HostileServer,
    Request,
    abort,
    canned,
    chunk,
    done_line,
    fixed,
    head,
    healthy,
    stream,
    text_line,
)

TLS_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32])  # fatal decode_error


def then_close(response: bytes) -> Handler:
    """Send ``response``, then close our side (FIN) whatever the client does."""

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(response)
        await writer.drain()

    return handler


def then_reset(response: bytes) -> Handler:
    """Send ``response``, then reset the connection (RST)."""

    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(response)
        await writer.drain()
        await asyncio.sleep(0.05)  # let the bytes leave before the reset discards them
        abort(writer)

    return handler


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        # Protocol violations: the bytes break HTTP/1.1 while the connection is open.
        (head(200, [NDJSON]) + chunk(text_line()) + b"zz\r\nabc\r\n", Reason.INVALID_RESPONSE),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n", Reason.INVALID_RESPONSE),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", Reason.INVALID_RESPONSE),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", Reason.INVALID_RESPONSE),
        # Not HTTP at all, then a close: a TLS port's alert, an SSH banner.
        (TLS_ALERT, Reason.INVALID_RESPONSE),
        (b"SSH-2.0-OpenSSH_9.6\r\n", Reason.INVALID_RESPONSE),
        # A close before done: nothing, a cut status line, a cut body.
        (b"", Reason.TRUNCATED),
        (b"HTTP/1.1 2", Reason.TRUNCATED),
        (head(200, [NDJSON]) + chunk(text_line()) + chunk(text_line()), Reason.TRUNCATED),
        (fixed(200, text_line() + b'{"response":"x","do', [NDJSON]), Reason.TRUNCATED),
        # Framing intact, stream ends without done.
        (stream(text_line(), text_line()), Reason.TRUNCATED),
    ],
    ids=[
        "bad-chunk-framing",
        "1MB-header",
        "101",
        "bad-content-length",
        "tls-alert",
        "ssh-banner",
        "close-before-response",
        "close-in-status-line",
        "eof-mid-stream",
        "eof-mid-line",
        "end-without-done",
    ],
)
async def test_bytes_then_close(response: bytes, reason: Reason) -> None:
    """Each answer, followed by the server closing its side, earns exactly its reason."""
    with HostileServer(then_close(response)) as server:
        result = await probe_hostile(server)
    assert result.reason is reason, result.detail


async def test_reset_mid_stream_is_truncated() -> None:
    """A connection reset after some chunks is a close before done."""
    response = head(200, [NDJSON]) + chunk(text_line()) + chunk(text_line())
    with HostileServer(then_reset(response)) as server:
        result = await probe_hostile(server)
    assert result.reason is Reason.TRUNCATED, result.detail
    assert result.ttft_ns is not None


async def test_self_signed_certificate_is_tls_error() -> None:
    """A certificate nobody vouches for fails verification: tls_error, socket closed."""
    with HostileServer(healthy, tls=True) as server, peak_memory() as peak:
        result = await probe(server.url)
    assert result.reason is Reason.TLS_ERROR, result.detail
    assert "certificate" in result.detail
    assert peak.bytes < SMALL_PEAK


async def test_plain_http_to_a_silent_tls_port_is_truncated() -> None:
    """A TLS server that closes on a plain-HTTP request without a byte (OpenSSL's way)
    cannot be told from a server closing before its response: truncated."""
    with HostileServer(healthy, tls=True) as server, peak_memory() as peak:
        result = await probe(server.url.replace("https://", "http://"))
    assert result.reason is Reason.TRUNCATED, result.detail
    assert peak.bytes < SMALL_PEAK


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (404, b'{"error":"model \'m\' not found"}', Reason.MODEL_NOT_FOUND),
        (404, b"404 page not found", Reason.HTTP_ERROR),
        (503, b'{"error":"server busy, please try again."}', Reason.SERVER_BUSY),
        (500, b'{"error":"llama-server process has terminated"}', Reason.HTTP_ERROR),
        (400, b'{"error":"\\"m\\" does not support thinking"}', Reason.HTTP_ERROR),
        (401, b"", Reason.HTTP_ERROR),
        (429, b'{"error":"too many"}', Reason.HTTP_ERROR),
    ],
)
async def test_error_statuses(status: int, body: bytes, reason: Reason) -> None:
    """4xx and 5xx answers map to their reasons, with the status kept."""
    response = fixed(status, body, [("Content-Type", "application/json")])
    with HostileServer(canned(response)) as server:
        result = await probe_hostile(server)
    assert result.reason is reason, result.detail
    assert result.http_status == status


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirects_are_not_followed(status: int) -> None:
    """A redirect is an http_error; the place it points to never hears from the probe."""
    with HostileServer(healthy) as elsewhere:
        location = [("Location", f"{elsewhere.url}/api/generate")]
        with HostileServer(canned(fixed(status, b"", location))) as server:
            result = await probe_hostile(server)
        assert elsewhere.accepted == 0
    assert result.reason is Reason.HTTP_ERROR, result.detail
    assert result.http_status == status


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        ([text_line(), b'{"response":"x","done":fal\n'], Reason.INVALID_RESPONSE),
        ([text_line(), b'{"response":"\xff\xfe","done":false}\n'], Reason.INVALID_RESPONSE),
        ([text_line(), b"<html>oops</html>\n"], Reason.INVALID_RESPONSE),
        (
            [text_line(), b'{"error":"an error was encountered while running the model"}\n'],
            Reason.STREAM_ERROR,
        ),
        ([b'{"error":"boom"}\n', done_line()], Reason.STREAM_ERROR),
    ],
    ids=["malformed-json", "invalid-utf8", "html", "mid-stream-error", "error-first"],
)
async def test_bad_lines(lines: list[bytes], reason: Reason) -> None:
    """A 200 stream whose lines are not Ollama's chunks, or that reports an error."""
    with HostileServer(canned(stream(*lines))) as server:
        result = await probe_hostile(server)
    assert result.reason is reason, result.detail


async def test_memory_error_is_invalid_response(monkeypatch: pytest.MonkeyPatch) -> None:
    """A MemoryError while handling a response (a host short of memory, a line too costly
    to hold) names the response, not an HTTP status: invalid_response, not http_error."""

    def exhausted(line: bytes) -> None:
        raise MemoryError

    monkeypatch.setattr(stream_module, "parse_chunk", exhausted)
    with HostileServer(canned(stream(text_line(), done_line()))) as server:
        result = await probe_hostile(server)
    assert result.reason is Reason.INVALID_RESPONSE, result.detail
    assert "memory" in result.detail


async def test_success_against_the_same_harness() -> None:
    """The harness itself is not hostile: a well-formed stream is a success."""
    with HostileServer(healthy) as server:
        result = await probe_hostile(server)
    assert result.success, result.detail
    assert json.loads(server.requests[0].body)["stream"] is True
