"""Connection and time limits: idle, slowloris and slow-reading clients cannot starve scrapes,
and no number of connections makes the server hold more than its limit.

Timeouts are set short here so the tests finish quickly; assertions wait on events (a closed
socket, a scrape's answer), never on elapsed time.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.web import ServerLimits, WebHooks, WebServer, make_app
from exporter.web.limits import MAX_HEAD_BYTES
from tests.support.processes import http_get
from tests.test_web import hooks

WAIT_S = 30.0  # an upper bound for failure detection only, never a performance claim


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def server_sockets(port: int) -> int:
    """Sockets this process holds whose *local* port is ``port``, the listener excluded:
    the server's accepted connections. Queued-but-unaccepted ones have no descriptor."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] != "0A":  # 0A = LISTEN
                inodes.add(fields[9])
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held += 1
    return held


@pytest.fixture
def serve() -> Iterator[Callable[..., WebServer]]:
    started: list[WebServer] = []

    def start(limits: ServerLimits, app_hooks: WebHooks | None = None) -> WebServer:
        app = make_app(CollectorRegistry(), app_hooks or hooks(), enable_lifecycle=True)
        web = WebServer("127.0.0.1", 0, app, limits=limits)
        web.start()
        started.append(web)
        return web

    yield start
    for web in started:
        web.close()


def closed_by_peer(sock: socket.socket) -> bool:
    """Read until the server closes the connection (True) or WAIT_S passes (False)."""
    sock.settimeout(WAIT_S)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_idle_connections_time_out_so_a_scrape_gets_through(serve) -> None:
    """A limit's worth of connections that never send a request hold every slot until the
    head timeout closes them; the waiting scrape is then served."""
    web = serve(ServerLimits(max_connections=4, header_timeout=0.5))
    idle = [socket.create_connection((web.host, web.port), timeout=WAIT_S) for _ in range(4)]
    try:
        wait_until(lambda: web.open_connections == 4)
        assert http_get(web.url + "/metrics", timeout=WAIT_S)[0] == 200
        assert all(closed_by_peer(s) for s in idle)
    finally:
        for s in idle:
            s.close()


def test_slowloris_is_cut_off_although_it_keeps_sending(serve) -> None:
    """A client that drips header bytes makes progress on every read; the head deadline is
    for the whole head, so it is still closed and the scrape behind it is served."""
    web = serve(ServerLimits(max_connections=1, header_timeout=0.5))
    drip = socket.create_connection((web.host, web.port), timeout=WAIT_S)
    stop, cut = threading.Event(), threading.Event()

    def dripping() -> None:
        try:
            drip.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            while not stop.is_set():  # one endless header line: no header-count limit helps
                drip.sendall(b"y")
                stop.wait(0.05)
        except OSError:
            cut.set()

    thread = threading.Thread(target=dripping)
    thread.start()
    try:
        wait_until(lambda: web.open_connections == 1)
        assert http_get(web.url + "/metrics", timeout=WAIT_S)[0] == 200
        assert cut.wait(WAIT_S)
    finally:
        stop.set()
        thread.join()
        drip.close()


def exchange(web: WebServer, request: bytes) -> bytes:
    """Send ``request`` whole, then read until the server closes (or resets) the connection."""
    received = b""
    with socket.create_connection((web.host, web.port), timeout=WAIT_S) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:  # closed with some of the head unread
            pass
    return received


def head(request_line: bytes, header_bytes: int) -> bytes:
    """A request head: ``request_line``, then about ``header_bytes`` in 1 KB header lines."""
    lines = [b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(header_bytes // 1014)]
    return request_line + b"\r\n" + b"".join(lines) + b"\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        head(b"GET /metrics HTTP/1.1", MAX_HEAD_BYTES + 10_000),
        head(b"GET /" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1", 0),
    ],
    ids=["many-headers", "long-request-line"],
)
def test_head_over_the_byte_budget_is_431(serve, request_bytes: bytes) -> None:
    """A head past MAX_HEAD_BYTES is answered 431, whether in many lines that each stay
    within http.server's own per-line limit or in one long request line; a head just under
    the budget is served as usual."""
    web = serve(ServerLimits(max_connections=2))
    assert exchange(web, request_bytes).startswith(b"HTTP/1.0 431 ")
    under = head(b"GET /-/healthy HTTP/1.1", MAX_HEAD_BYTES - 10_000)
    assert exchange(web, under).startswith(b"HTTP/1.0 200 ")


def test_a_client_that_stops_reading_is_cut_off(serve) -> None:
    """A response that cannot be delivered within the write timeout ends the connection."""
    big = WebHooks(
        healthy=lambda: True,
        reload=lambda: (True, "x" * 8_000_000),
        results=dict,
        version="1",
    )
    web = serve(ServerLimits(max_connections=1, write_timeout=0.5), big)
    reader = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect((web.host, web.port))
    try:
        reader.sendall(b"POST /-/reload HTTP/1.0\r\n\r\n")  # then read nothing
        wait_until(lambda: web.open_connections == 1)
        assert http_get(web.url + "/-/healthy", timeout=WAIT_S)[0] == 200
        received = 0
        reader.settimeout(WAIT_S)
        try:
            while chunk := reader.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < 8_000_000
    finally:
        reader.close()


def test_many_connections_never_exceed_the_limit(serve) -> None:
    """50 idle connections against a limit of 4: four are held, the rest wait in the listen
    backlog without a descriptor or a thread (a backlog of 5 would make these connects
    hang), and all are served in turn once the clients go away."""
    threads_before = threading.active_count()
    web = serve(ServerLimits(max_connections=4, header_timeout=WAIT_S))
    clients = [socket.create_connection((web.host, web.port), timeout=WAIT_S) for _ in range(50)]
    result: list[int] = []
    scrape = threading.Thread(target=lambda: result.append(http_get(web.url + "/metrics")[0]))
    try:
        wait_until(lambda: web.open_connections == 4)
        assert server_sockets(web.port) == 4
        assert threading.active_count() <= threads_before + 1 + 4  # accept loop + slots
        scrape.start()
    finally:
        for c in clients:
            c.close()
    scrape.join()
    assert result == [200]
    assert web.peak_connections == 4


def test_close_cuts_open_connections(serve) -> None:
    """Stopping the server ends its connection threads instead of waiting for timeouts."""
    web = serve(ServerLimits(max_connections=2, header_timeout=WAIT_S))
    idle = socket.create_connection((web.host, web.port), timeout=WAIT_S)
    try:
        wait_until(lambda: web.open_connections == 1)
        web.close()
        assert closed_by_peer(idle)
        wait_until(lambda: web.open_connections == 0)
    finally:
        idle.close()


def test_limits_keep_descriptors_for_probes() -> None:
    """The server may take at most half the process's descriptors; defaults fit in 1024."""
    ServerLimits().check(fd_limit=1024)
    assert ServerLimits().backlog > 5
    with pytest.raises(ValueError, match="too few"):
        ServerLimits(max_connections=600).check(fd_limit=1024)
    with pytest.raises(ValueError, match="at least 1"):
        ServerLimits(max_connections=0).check(fd_limit=1024)
    with pytest.raises(ValueError, match="positive"):
        ServerLimits(header_timeout=0).check(fd_limit=1024)


class FailingListener:
    """The real listening socket, but its first ``failures`` accepts fail with EMFILE."""

    def __init__(self, sock: socket.socket, failures: int) -> None:
        self.sock, self.failures = sock, failures

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> tuple[socket.socket, object]:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self.sock.accept()

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


def test_out_of_descriptors_backs_off_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """EMFILE on accept (probes took every descriptor) is logged once, the connection stays
    queued, and it is served once descriptors are back, with the accept loop still alive."""
    web = WebServer("127.0.0.1", 0, make_app(CollectorRegistry(), hooks()))
    listener = FailingListener(web._server.socket, failures=3)
    web._server.socket = listener  # type: ignore[assignment]
    caplog.set_level(logging.WARNING, logger="exporter.web.server")
    web.start()
    try:
        assert http_get(web.url + "/-/healthy", timeout=WAIT_S)[0] == 200
        assert http_get(web.url + "/-/healthy", timeout=WAIT_S)[0] == 200
    finally:
        web.close()
    assert listener.failures == 0
    warnings = [r.getMessage() for r in caplog.records if "cannot accept" in r.getMessage()]
    assert warnings == ["web server cannot accept a connection: Too many open files"]
