"""The HTTP client's connection policy, against real loopback servers."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from exporter.ollama import client as client_module
from exporter.ollama.client import (
    PARTS_PER_PASS,
    OllamaClient,
    StreamResponse,
    classify_exception,
)
from exporter.ollama.network import AsyncioBackend, WireLog
from exporter.result import NS_PER_S, Reason
from exporter.simulator import ModelScript, OllamaSimulator
from tests.support.jobs import make_job, make_settings, probe_job


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A server that accepts connections and never says anything."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()


def test_transport_uses_the_lean_backend() -> None:
    """httpx still honours the injected network backend (fails if an upgrade drops it)."""
    target = make_settings("http://127.0.0.1:9", ["m"]).targets[0]
    client = OllamaClient(target)
    pool = client._client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool._network_backend, AsyncioBackend)


async def test_stalled_tls_handshake_is_bounded(
    silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that never answers the TLS handshake fails at the connect timeout, not later."""
    monkeypatch.setattr(client_module, "CONNECT_TIMEOUT_S", 0.5)
    job = make_job(f"https://127.0.0.1:{silent_port}", "m", timeout="20s", stall_timeout="5s")
    result = await probe_job(job)
    assert result.reason is Reason.CONNECT_ERROR
    assert 0.5 <= result.elapsed_ns / NS_PER_S < 2.0


async def test_headers_sent_and_env_proxy_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Configured headers and Accept-Encoding: identity are sent, and HTTP_PROXY from the
    environment is not used (it would buffer the stream and change TTFT)."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    async with OllamaSimulator({"m": ModelScript(first_token_delay=0.01, tokens=3)}) as sim:
        headers = {"Authorization": "Bearer s3cret"}
        job = make_settings(sim.url, ["m"], target={"headers": headers}, max_tokens=3).jobs()[0]
        result = await probe_job(job)
        assert result.success, result.detail
        sent = sim.requests[-1].headers
        assert sent["authorization"] == "Bearer s3cret"
        assert sent["accept-encoding"] == "identity"
        assert sent["user-agent"].startswith("ollama-probe-exporter/")


async def test_a_body_of_tiny_parts_hands_the_loop_back() -> None:
    """httpx hands over the chunk frames of one socket read without ever waiting: reading
    thousands of them, the probe and an error body's read still let other tasks run every
    ``PARTS_PER_PASS`` parts."""
    count = 100 * PARTS_PER_PASS

    async def frames() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield b"\n"

    passes = 0

    async def other_task() -> None:
        nonlocal passes
        while True:
            passes += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    try:
        for read in ("chunks", "read_limited"):
            response = StreamResponse(httpx.Response(200, content=frames()))
            before = passes
            if read == "chunks":
                assert [part async for part in response.chunks()] == [b"\n"] * count
            else:
                assert await response.read_limited(count) == b"\n" * count
            assert passes - before >= count // PARTS_PER_PASS - 1, read
    finally:
        task.cancel()


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (httpx.ConnectError("refused"), Reason.CONNECT_ERROR),
        (httpx.ConnectTimeout("slow"), Reason.CONNECT_ERROR),
        (httpx.PoolTimeout("pool"), Reason.CONNECT_ERROR),
        (httpx.ReadError("reset"), Reason.TRUNCATED),
        (httpx.DecodingError("gzip"), Reason.INVALID_RESPONSE),
    ],
)
def test_classify_exception(exc: Exception, reason: Reason) -> None:
    """Transport exceptions map to their reasons."""
    assert classify_exception(exc)[0] is reason


CLOSED = WireLog(received=300, head=b"HTTP/1.1 200 OK\r\n", eof=True)


@pytest.mark.parametrize(
    ("wire", "responded", "reason"),
    [
        (WireLog(received=0, eof=True), False, Reason.TRUNCATED),  # closed before anything
        (WireLog(received=4, head=b"HTTP", eof=True), False, Reason.TRUNCATED),  # mid-status
        (CLOSED, True, Reason.TRUNCATED),  # incomplete chunked read
        (
            WireLog(received=30, head=b"\x15\x03\x03\x00\x02", eof=True),
            False,
            Reason.INVALID_RESPONSE,
        ),
        (WireLog(received=300, head=b"HTTP/1.1 200 OK\r\n"), True, Reason.INVALID_RESPONSE),
        (WireLog(received=9, head=b"HTTP/1.1 "), False, Reason.INVALID_RESPONSE),
        (None, True, Reason.INVALID_RESPONSE),
    ],
)
def test_protocol_error_is_truncated_only_after_a_close(
    wire: WireLog | None, responded: bool, reason: Reason
) -> None:
    """A protocol error after the peer closed is `truncated` (unless the bytes before the close
    were not HTTP at all); raised while the connection was open, the server's bytes broke
    HTTP/1.1: `invalid_response`."""
    exc = httpx.RemoteProtocolError("whatever h11 says")
    assert classify_exception(exc, wire, responded=responded)[0] is reason


def test_tls_error_found_in_cause_chain() -> None:
    """A ConnectError caused by an SSL error is tls_error."""
    outer = httpx.ConnectError("handshake failed")
    outer.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    assert classify_exception(outer)[0] is Reason.TLS_ERROR


def test_clients_share_one_default_tls_context() -> None:
    """Loading the CA bundle takes tens of milliseconds of blocking work: it is done once,
    not per client, so a reload that creates clients does not stall probes in flight."""

    def context(url: str, **target: object) -> ssl.SSLContext:
        client = OllamaClient(make_settings(url, ["m"], target=target).targets[0])
        return client._client._transport._pool._ssl_context  # type: ignore[attr-defined]

    shared = context("http://127.0.0.1:9")
    assert context("https://127.0.0.1:10") is shared
    assert context("https://127.0.0.1:11", tls={"insecure_skip_verify": True}) is not shared
    assert shared.verify_mode is ssl.CERT_REQUIRED


def test_plain_http_target_ignores_its_tls_settings(tmp_path: Path) -> None:
    """An http:// target has no TLS: its ``tls`` settings are ignored (config warns), so a
    CA file that is no bundle cannot stop its client from being built."""
    not_a_bundle = tmp_path / "ca.pem"
    not_a_bundle.write_text("not a certificate\n")
    target = make_settings(
        "http://127.0.0.1:9", ["m"], target={"tls": {"ca_file": str(not_a_bundle)}}
    ).targets[0]
    plain = OllamaClient(make_settings("http://127.0.0.1:9", ["m"]).targets[0])
    client = OllamaClient(target)
    pool = client._client._transport._pool  # type: ignore[attr-defined]
    assert pool._ssl_context is plain._client._transport._pool._ssl_context  # type: ignore[attr-defined]
