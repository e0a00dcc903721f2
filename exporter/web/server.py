"""The HTTP server: prometheus-client's threaded WSGI server, bounded in connections and time.

It runs in its own threads, off the probe event loop: rendering a scrape holds the interpreter
for tens of milliseconds, and on the loop every probe in flight would absorb that into its
timings. It is bounded (``exporter.web.limits``) instead of starting a thread per connection
forever:

- at most ``max_connections`` connections are held at once. The accept loop takes a slot
  *before* it accepts, so further connections wait in the kernel's listen backlog, where they
  cost no descriptor and no thread of ours, and are served in arrival order as slots free up;
- the request head, TLS handshake included, must arrive within ``header_timeout`` of the
  accept in total (not per read), so a slowloris client dripping a byte a second is cut off;
  a head over ``MAX_HEAD_BYTES`` is answered 431 instead of read on;
- a response must be written within ``write_timeout`` of its first byte, so a client that
  stops reading cannot keep a slot either;
- one request per connection (wsgiref answers HTTP/1.0), so an idle keep-alive connection
  never holds a slot.

TLS is negotiated per connection in that connection's thread. prometheus-client wraps the
listening socket instead, which runs every handshake inside ``accept()``: one client that
connects and stays silent would stall the whole server.
"""

from __future__ import annotations

import contextlib
import io
import logging
import selectors
import socket
import threading
import time
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import ServerHandler

from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

from exporter.web.auth import SNAPSHOT_KEY, BasicAuth, protect
from exporter.web.limits import (
    ConnectionSlots,
    DeadlineIO,
    HeadTooLarge,
    ServerLimits,
    remaining,
)
from exporter.web.source import Snapshot, WebConfigSource
from exporter.web.wsgi import WsgiApp

if TYPE_CHECKING:
    import os
    import types


log = logging.getLogger(__name__)

_BACKOFF_S = 0.1


class _ServerHandler(ServerHandler):
    """wsgiref's handler, logging through ``logging`` instead of printing to stderr."""

    request_handler: Any

    def log_exception(
        self,
        exc_info: tuple[type[BaseException], BaseException, types.TracebackType]
        | tuple[None, None, None],
    ) -> None:
        error = exc_info[1]
        if isinstance(error, OSError):  # the client went away or stopped reading
            log.debug("web response not delivered: %s", error or type(error).__name__)
        else:
            log.error("web request failed", exc_info=exc_info)


class _Handler(_SilentHandler):
    """One request on one connection, read through deadline-bound I/O."""

    server: _BoundedServer

    def __init__(
        self,
        request: socket.socket,
        client_address: Any,
        server: _BoundedServer,
        *,
        conn_io: DeadlineIO,
        snapshot: Snapshot,
    ) -> None:
        self._io = conn_io
        self._snapshot = snapshot
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        self.connection = self.request
        self.rfile = io.BufferedReader(self._io)
        self.wfile = self._writer = io.BufferedWriter(self._io)

    def handle(self) -> None:
        """wsgiref's ``handle()``, plus: the head deadline and byte budget end once the head
        is parsed, and the app sees the connection's web config under ``SNAPSHOT_KEY``."""
        try:
            # No length limit of its own: the head's byte budget bounds the request line too.
            self.raw_requestline = self.rfile.readline()
            if not self.parse_request():  # an error was sent, or the client sent nothing
                return
        except HeadTooLarge:
            self.requestline = self.request_version = self.command = ""
            self.send_error(431)
            return
        self._io.head_complete()
        environ: dict[str, Any] = {**self.get_environ(), SNAPSHOT_KEY: self._snapshot}
        handler = _ServerHandler(
            self.rfile, self._writer, self.get_stderr(), environ, multithread=False
        )
        handler.request_handler = self
        app = self.server.get_app()
        if app is None:
            raise RuntimeError("no WSGI app set")
        handler.run(app)


class _BoundedServer(ThreadingWSGIServer):
    """prometheus-client's ``ThreadingWSGIServer`` with an accept loop that respects slots."""

    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        limits: ServerLimits,
        source: WebConfigSource,
    ) -> None:
        self.address_family = family
        self.request_queue_size = limits.backlog
        self.limits = limits
        self.source = source
        self.slots = ConnectionSlots(limits.max_connections)
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            # Binds and listens. The handler class is never used by this server's own
            # process_request_thread, which builds a _Handler per connection itself.
            super().__init__(address, _SilentHandler)
        except BaseException:
            self._wake_r.close()
            self._wake_w.close()
            raise
        self.socket.setblocking(False)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        with selectors.PollSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while self.slots.take():
                accepted = self._accept(selector)
                if accepted is None:
                    self.slots.give_back(None)
                    break
                conn, client_address = accepted
                self.slots.hold(conn)
                try:
                    self.process_request(conn, client_address)  # a thread per connection
                except Exception:
                    log.exception("cannot start a thread for a web connection")
                    conn.close()
                    self.slots.give_back(conn)

    def _accept(self, selector: selectors.BaseSelector) -> tuple[socket.socket, Any] | None:
        """The next connection, or ``None`` once the server is stopping."""
        warned = False
        while not self._stopping.is_set():
            if any(key.fileobj is self._wake_r for key, _ in selector.select()):
                return None
            try:
                return self.socket.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError as err:
                # Out of descriptors or memory, typically: the connection stays queued.
                # Back off rather than spin on a listener that stays readable, and never
                # let one failed accept end the accept loop.
                if self._stopping.is_set():
                    break
                if not warned:
                    log.warning("web server cannot accept a connection: %s", err.strerror or err)
                    warned = True
                self._stopping.wait(_BACKOFF_S)
        return None

    def process_request_thread(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if not isinstance(request, socket.socket):
            raise TypeError("a TCP server gets sockets, not datagrams")
        conn = request
        try:
            deadline = time.monotonic() + self.limits.header_timeout
            snapshot = self.source.current()
            if snapshot.config.tls is not None:
                request.settimeout(remaining(deadline, "TLS handshake not complete in time"))
                conn = snapshot.config.tls.context.wrap_socket(
                    request, server_side=True, do_handshake_on_connect=False
                )
                self.slots.swap(request, conn)
                conn.do_handshake()
            conn_io = DeadlineIO(conn, deadline, self.limits.write_timeout)
            _Handler(conn, client_address, self, conn_io=conn_io, snapshot=snapshot)
        except OSError as err:  # timeouts, TLS failures and resets are all OSErrors
            log.debug(
                "web connection closed early",
                extra={"fields": {"client": client_address[0], "error": str(err) or repr(err)}},
            )
        except Exception:
            log.exception("web connection failed")
        finally:
            # Close before giving the slot back: the server never holds more than its limit.
            self.shutdown_request(conn)
            self.slots.give_back(conn)

    def shutdown(self) -> None:
        """Stop the accept loop (it returns promptly: no polling interval to wait out)."""
        self._stopping.set()
        self.slots.close()
        with contextlib.suppress(OSError):  # already closed
            self._wake_w.send(b"\0")

    def server_close(self) -> None:
        super().server_close()
        self.slots.close()
        self._wake_r.close()
        self._wake_w.close()


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    """The address family and literal address to bind ``host`` on (``[::1]`` → IPv6)."""
    host = host.strip("[]") or "0.0.0.0"
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


def format_address(host: str, port: int) -> str:
    """``host:port``, with IPv6 hosts in brackets as URLs need them."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def local_host(host: str) -> str:
    """Where a client on this machine reaches a server bound on ``host``: a wildcard
    address is not connectable everywhere, so it becomes loopback of the same family."""
    return _LOOPBACK.get(host, host)


class WebServer:
    """The exporter's HTTP server, bound (and its web config validated) on construction.

    Raises ``WebConfigError`` for an unusable web config file, before anything is bound;
    ``OSError`` when the address cannot be bound; ``ValueError`` for impossible ``limits``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        app: WsgiApp,
        *,
        web_config_file: str | os.PathLike[str] | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        self.limits = limits or ServerLimits()
        self.limits.check()
        self._source = WebConfigSource(web_config_file)
        family, address = _resolve(host, port)
        self._server = _BoundedServer((address, port), family, self.limits, self._source)
        self._server.set_app(protect(app, BasicAuth()))
        bound = self._server.socket.getsockname()
        self.host = str(bound[0])  # as bound: "0.0.0.0", "::", "127.0.0.1"
        self.port = int(bound[1])  # the real port when 0 was asked for
        self._thread = threading.Thread(target=self._server.serve_forever, name="web", daemon=True)
        self._started = False

    @property
    def tls(self) -> bool:
        return self._source.initial_tls

    @property
    def basic_auth(self) -> bool:
        """Whether users were configured at start-up (the file may change that later)."""
        return bool(self._source.initial.users)

    @property
    def address(self) -> str:
        """``host:port`` as bound, e.g. ``0.0.0.0:10434`` or ``[::]:10434``."""
        return format_address(self.host, self.port)

    @property
    def url(self) -> str:
        """The bound address as a URL, for the start-up log: ``http://[::]:10434``."""
        return f"{'https' if self.tls else 'http'}://{self.address}"

    @property
    def local_url(self) -> str:
        """A URL a client on this host can use: a wildcard host becomes loopback."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{format_address(local_host(self.host), self.port)}"

    @property
    def open_connections(self) -> int:
        return self._server.slots.open

    @property
    def peak_connections(self) -> int:
        """The most connections held at once since start-up (never above the limit)."""
        return self._server.slots.peak

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, cut open connections and release the port."""
        self._server.shutdown()
        if self._started:
            self._thread.join()
        self._server.server_close()
