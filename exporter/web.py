"""HTTP endpoints: ``/metrics``, ``/-/healthy``, ``POST /-/reload`` and a landing page ``/``.

The server runs in its own threads, off the probe event loop: rendering a scrape holds the
interpreter for tens of milliseconds, and on the loop every probe in flight would absorb that
into its timings. Scrapes read the metric registry (its updates are lock-protected) and an
immutable snapshot of the latest results, so a scrape answers even while every probe is
stalled, and never triggers or waits for a probe.

prometheus-client's own ``start_http_server`` serves metrics on *every* path and refuses
POST, so its WSGI app is mounted at ``/metrics`` only (keeping gzip, ``name[]`` filtering
and OpenMetrics negotiation) inside a small dispatcher.
"""

from __future__ import annotations

import html
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from exporter.report import result_dict
from exporter.result import JobKey, ProbeResult

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class WebHooks:
    """What the endpoints need from the daemon, as plain callables (thread-safe)."""

    healthy: Callable[[], bool]
    reload: Callable[[], tuple[bool, str]]
    results: Callable[[], Mapping[JobKey, ProbeResult | None]]
    version: str


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    """For an IPv6 listen address such as ``[::]:10434`` or ``[::1]:10434``."""

    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: Prometheus scrapes every few seconds."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _respond(
    start: StartResponse, status: str, body: str, ctype: str = "text/plain"
) -> list[bytes]:
    data = body.encode()
    start(status, [("Content-Type", f"{ctype}; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


def make_app(registry: CollectorRegistry, hooks: WebHooks) -> WsgiApp:
    """The WSGI application: a dispatcher over the four endpoints."""
    metrics_app = make_wsgi_app(registry)

    def healthy(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        if hooks.healthy():
            return _respond(start, "200 OK", "Healthy\n")
        return _respond(start, "503 Service Unavailable", "scheduler not running\n")

    def reload(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _respond(start, "405 Method Not Allowed", "use POST to reload\n")
        ok, message = hooks.reload()
        return _respond(start, "200 OK" if ok else "500 Internal Server Error", message + "\n")

    def index(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        return _respond(start, "200 OK", landing_page(hooks), "text/html")

    routes: dict[str, WsgiApp] = {
        "/metrics": metrics_app,
        "/-/healthy": healthy,
        "/-/reload": reload,
        "/": index,
    }

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        route = routes.get(environ.get("PATH_INFO", "/"))
        if route is None:
            return _respond(start, "404 Not Found", "not found\n")
        return route(environ, start)

    return app


def _row(key: JobKey, result: ProbeResult | None) -> str:
    cells: list[str] = [key.target, key.model, key.probe]
    if result is None:
        cells += ["pending", "", "", ""]
    else:
        data = result_dict(result)
        ttft, tps = data["time_to_first_token_seconds"], data["tokens_per_second"]
        cells += [
            "ok" if data["success"] else f"FAIL: {data['reason']}",
            "" if ttft is None else f"{ttft:.3f} s",
            "" if tps is None else f"{tps:.1f}",
            data["detail"],
        ]
    return "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"


def landing_page(hooks: WebHooks) -> str:
    """A small page: links, and the last result of every job."""
    rows = "\n".join(
        _row(k, r) for k, r in sorted(hooks.results().items(), key=lambda kv: str(kv[0]))
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Ollama Probe Exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:left}}</style>
</head><body>
<h1>Ollama Probe Exporter</h1>
<p>Version {html.escape(hooks.version)}.
<a href="/metrics">Metrics</a> &middot; <a href="/-/healthy">Health</a></p>
<h2>Last probe per job</h2>
<table>
<tr><th>target</th><th>model</th><th>probe</th><th>result</th><th>TTFT</th><th>tokens/s</th><th>detail</th></tr>
{rows}
</table>
</body></html>
"""


class WebServer:
    """The threaded HTTP server; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, host: str, port: int, app: WsgiApp) -> None:
        server_class = _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer
        self._server = make_server(
            host, port, app, server_class=server_class, handler_class=_QuietHandler
        )
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="web", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
