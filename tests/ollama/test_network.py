"""The network backend over loopback: arrivals stamped by the kernel where Linux offers it (in
plain TCP and in TLS), by the event loop where it does not, and the socket transport behind
the kernel stamps doing what a client connection needs.

Which stamp a read got is proven by order alone, never by a time bound: bytes written to a
loopback socket reach the peer inside the ``send`` call, so a kernel stamp precedes the
moment that call returned, while a stamp taken when the loop delivers the bytes follows it.
"""

from __future__ import annotations

import asyncio
import importlib
import socket
import ssl
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpcore
import pytest

from exporter.ollama import network, receive_time
from exporter.ollama.network import AsyncioBackend, AsyncioStream, WireLog, recording
from exporter.result import NS_PER_S
from exporter.simulator import ModelScript, OllamaSimulator
from exporter.simulator.http11 import HttpConnection
from tests.hostile.server import HostileServer, healthy
from tests.hostile.server import tls_context as server_tls_context
from tests.support.jobs import make_job, probe_job

LINUX = sys.platform.startswith("linux")
needs_kernel_stamps = pytest.mark.skipif(
    not LINUX or not receive_time.available(), reason="needs Linux receive timestamps"
)


def client_tls_context() -> ssl.SSLContext:
    """Trusts anything: the committed test certificate is self-signed."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


HOLD_NS = 50_000_000


def hold_the_loop() -> int:
    """Keep the event loop busy for ``HOLD_NS`` (a blocking sleep: a loop late with other
    work); return the monotonic time after. A kernel stamp of bytes that arrived before is
    at least that much older than the loop's stamp could be. The send's own lateness in the
    kernel (deferred transmission, softirqs on a loaded host) is far smaller: it can put a
    kernel stamp a little after the sender's clock reading, never half the hold after it."""
    time.sleep(HOLD_NS / NS_PER_S)
    return time.monotonic_ns()


class Peer:
    """A loopback server socket the test drives by hand, synchronously."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.listener.setblocking(False)
        self.port = int(self.listener.getsockname()[1])
        self.conn: socket.socket | None = None

    async def accept(self) -> socket.socket:
        self.conn, _ = await asyncio.get_running_loop().sock_accept(self.listener)
        return self.conn

    def send(self, data: bytes) -> int:
        """Send ``data`` at once; return the monotonic time just after ``send`` returned."""
        assert self.conn is not None
        self.conn.setblocking(True)
        self.conn.sendall(data)
        return time.monotonic_ns()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    server = Peer()
    yield server
    server.close()


async def connected(backend: AsyncioBackend, peer: Peer) -> AsyncioStream:
    stream = await backend.connect_tcp("127.0.0.1", peer.port, timeout=5)
    await peer.accept()
    assert isinstance(stream, AsyncioStream)
    return stream


@needs_kernel_stamps
async def test_tcp_arrival_is_the_kernels_stamp(peer: Peer) -> None:
    """The arrival is when the bytes reached the host, not when the loop, held busy after
    the send, got round to them."""
    backend = AsyncioBackend(time.monotonic_ns)
    assert backend.kernel_stamps
    wire = WireLog()
    with recording(wire):
        stream = await connected(backend, peer)
    try:
        peer.send(b"hello")
        held_until = hold_the_loop()
        assert await stream.read(100) == b"hello"
        assert wire.connect_started_ns is not None
        assert wire.last_arrival_ns is not None
        assert wire.connect_started_ns <= wire.last_arrival_ns < held_until - HOLD_NS // 2
        assert backend._bridge is not None
        assert backend._bridge.kernel == 1
    finally:
        await stream.aclose()


async def test_without_kernel_stamps_the_loop_stamps_on_delivery(peer: Peer) -> None:
    """The fallback (any platform without receive timestamps): the arrival is when the event
    loop delivered the bytes, after the peer's send returned."""
    backend = AsyncioBackend(time.monotonic_ns, kernel_stamps=False)
    assert not backend.kernel_stamps
    stream = await connected(backend, peer)
    try:
        sent_ns = peer.send(b"hello")
        assert await stream.read(100) == b"hello"
        assert stream.wire.last_arrival_ns is not None
        assert stream.wire.last_arrival_ns >= sent_ns
    finally:
        await stream.aclose()


async def test_platform_without_kernel_stamps_uses_asyncios_transport(
    peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where ``available()`` says no, the backend never asks for stamps at all."""
    monkeypatch.setattr(receive_time, "available", lambda: False)
    backend = AsyncioBackend(time.monotonic_ns)
    assert not backend.kernel_stamps
    stream = await connected(backend, peer)
    try:
        transport = stream.get_extra_info("socket")
        assert transport is not None
        assert not isinstance(stream._transport, network._StampedSocketTransport)
    finally:
        await stream.aclose()


@needs_kernel_stamps
async def test_socket_refusing_the_option_falls_back_per_read(
    peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket the kernel will not stamp (the option refused): reads carry no stamp and
    are stamped when they are read, never with a stale or made-up time."""
    monkeypatch.setattr(receive_time, "enable", lambda sock: False)
    backend = AsyncioBackend(time.monotonic_ns)
    stream = await connected(backend, peer)
    try:
        sent_ns = peer.send(b"hello")
        assert await stream.read(100) == b"hello"
        assert stream.wire.last_arrival_ns is not None
        assert stream.wire.last_arrival_ns >= sent_ns
        assert backend._bridge is not None
        assert (backend._bridge.kernel, backend._bridge.fallback) == (0, 1)
    finally:
        await stream.aclose()


async def tls_server(
    on_request: Callable[[asyncio.StreamWriter], Awaitable[None]],
) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1)
        await on_request(writer)
        await reader.read()  # until the client closes
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls_context())


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "loop"])
async def test_tls_arrival_is_stamped_like_plain_tcp(kernel: bool) -> None:
    """Over TLS the kernel stamps the ciphertext, whose arrival is the plaintext's; without
    kernel stamps the loop stamps the decrypted bytes as they are delivered."""
    if kernel and not (LINUX and receive_time.available()):
        pytest.skip("needs Linux receive timestamps")
    loop = asyncio.get_running_loop()
    sent: asyncio.Future[int] = loop.create_future()

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello over tls")  # the encrypted record leaves in this call
        sent.set_result(hold_the_loop())

    server = await tls_server(answer)
    backend = AsyncioBackend(time.monotonic_ns, kernel_stamps=kernel)
    port = int(server.sockets[0].getsockname()[1])
    stream = await backend.connect_tcp("127.0.0.1", port, timeout=5)
    try:
        stream = await stream.start_tls(client_tls_context(), "127.0.0.1", timeout=5)
        assert stream.get_extra_info("ssl_object") is not None
        await stream.write(b"?")
        data = await stream.read(100)
        assert data == b"hello over tls"
        assert isinstance(stream, AsyncioStream)
        arrival = stream.wire.last_arrival_ns
        assert arrival is not None
        held_until = await sent
        if kernel:
            assert arrival < held_until - HOLD_NS // 2
        else:
            assert arrival >= held_until
    finally:
        await stream.aclose()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "loop"])
async def test_probe_ttft_ends_at_the_first_chunks_arrival(
    kernel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the whole client, with the event loop held busy after the simulator's first
    write: with kernel stamps the first text chunk arrived with its write, long before the
    loop was free; without, once the loop was free."""
    if kernel and not (LINUX and receive_time.available()):
        pytest.skip("needs Linux receive timestamps")
    monkeypatch.setattr(receive_time, "available", lambda: kernel)
    write = HttpConnection.write
    holds: list[int] = []

    async def write_then_hold(self: HttpConnection, data: bytes) -> int:
        # The first write is the head and the first text chunk. Only that one: bytes that
        # wait together in the socket share the newest one's stamp.
        written = await write(self, data)
        if not holds:
            holds.append(hold_the_loop())
        return written

    monkeypatch.setattr(HttpConnection, "write", write_then_hold)
    # The second chunk is due well after the hold: the first read must find the first
    # chunk alone.
    script = ModelScript(first_token_delay=0.02, tokens_per_second=5.0, tokens=100)
    async with OllamaSimulator({"m": script}) as sim:
        job = make_job(sim.url, "m", max_tokens=2)
        result = await probe_job(job)
        assert result.success, result.detail
        assert result.t0_ns is not None
        assert result.ttft_ns is not None
        [request] = [r for r in sim.requests if r.path == "/api/generate"]
        first_write = request.text_write_ns[0]
        if kernel:
            assert result.t0_ns + result.ttft_ns < first_write + HOLD_NS // 2
        else:
            assert result.t0_ns + result.ttft_ns >= first_write + HOLD_NS


async def test_tls_probe_succeeds_over_the_stamping_transport() -> None:
    """A whole probe over https (a self-signed server, verification off) succeeds."""
    with HostileServer(healthy, tls=True) as server:
        job = make_job(server.url, "m", target={"tls": {"insecure_skip_verify": True}})
        result = await probe_job(job)
    assert result.success, result.detail


# The stamping transport as a transport: end of stream, flow control, errors, closing.


async def test_peer_close_is_end_of_stream(peer: Peer) -> None:
    """Bytes before the close are read, then the end; the log says the peer closed."""
    stream = await connected(AsyncioBackend(time.monotonic_ns), peer)
    try:
        peer.send(b"last words")
        assert peer.conn is not None
        peer.conn.shutdown(socket.SHUT_WR)
        assert await stream.read(100) == b"last words"
        assert await stream.read(100) == b""
        assert stream.wire.eof
    finally:
        await stream.aclose()


async def test_large_write_waits_for_the_reader(peer: Peer) -> None:
    """A write larger than the socket buffers completes once the peer reads it all."""
    stream = await connected(AsyncioBackend(time.monotonic_ns), peer)
    payload = bytes(range(256)) * 40_000  # 10 MB
    conn = peer.conn
    assert conn is not None
    loop = asyncio.get_running_loop()
    try:
        writing = asyncio.ensure_future(stream.write(payload, timeout=30))
        received = bytearray()
        while len(received) < len(payload):
            received += await loop.sock_recv(conn, 1 << 20)
        await writing
        assert received == payload
    finally:
        await stream.aclose()


async def test_close_reaches_the_peer(peer: Peer) -> None:
    """``aclose`` closes the socket: the peer reads the end of the stream."""
    stream = await connected(AsyncioBackend(time.monotonic_ns), peer)
    await stream.write(b"bye")
    await stream.aclose()
    conn = peer.conn
    assert conn is not None
    loop = asyncio.get_running_loop()
    received = b""
    while chunk := await loop.sock_recv(conn, 100):
        received += chunk
    assert received == b"bye"


async def test_reset_by_peer_is_a_read_error(peer: Peer) -> None:
    """A reset (RST) mid-stream is httpcore's ReadError, and the log records the end."""
    stream = await connected(AsyncioBackend(time.monotonic_ns), peer)
    conn = peer.conn
    assert conn is not None
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.write(b"unread")  # unread data makes the close a reset
    loop = asyncio.get_running_loop()
    await loop.sock_recv(conn, 1)
    conn.close()
    peer.conn = None
    try:
        with pytest.raises(httpcore.ReadError):
            await read_to_the_end(stream)
        assert stream.wire.eof
    finally:
        await stream.aclose()


async def read_to_the_end(stream: httpcore.AsyncNetworkStream) -> None:
    while await stream.read(100):
        pass


async def test_refused_connection_is_connect_error() -> None:
    """Nothing listening: ConnectError, as with httpcore's own backend."""
    closed = Peer()
    port = closed.port
    closed.close()
    backend = AsyncioBackend(time.monotonic_ns)
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("127.0.0.1", port, timeout=5)


async def test_host_names_are_resolved(peer: Peer) -> None:
    """A name goes through the resolver; every address it gives is tried in turn."""
    stream = await backend_connect("localhost", peer)
    try:
        assert stream.get_extra_info("server_addr")[1] == peer.port
    finally:
        await stream.aclose()


async def backend_connect(host: str, peer: Peer) -> httpcore.AsyncNetworkStream:
    backend = AsyncioBackend(time.monotonic_ns)
    stream = await backend.connect_tcp(host, peer.port, timeout=5)
    await peer.accept()
    return stream


async def test_socket_options_reach_the_socket(peer: Peer) -> None:
    """httpcore's ``socket_options`` are set on the connected socket."""
    backend = AsyncioBackend(time.monotonic_ns)
    option = (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    stream = await backend.connect_tcp("127.0.0.1", peer.port, timeout=5, socket_options=[option])
    await peer.accept()
    try:
        sock = stream.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        await stream.aclose()


def test_missing_sniffio_is_not_searched_for_again() -> None:
    """httpcore's per-connection ``import sniffio`` costs a sys.path search when sniffio is
    absent: the backend makes that import fail at once instead (or sniffio is installed)."""
    if "sniffio" in sys.modules and sys.modules["sniffio"] is None:
        with pytest.raises(ImportError):
            importlib.import_module("sniffio")
    else:
        importlib.import_module("sniffio")
