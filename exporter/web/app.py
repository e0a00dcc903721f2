"""The WSGI application: a dispatcher over ``/metrics``, ``/-/healthy``, ``/-/reload`` and ``/``.

prometheus-client's own ``start_http_server`` serves metrics on *every* path and refuses
POST, so ``/metrics`` is mounted alone inside this small dispatcher. A GET of the exporter's
registry (``exporter.exposition.Registry``) is answered from the recorder's pre-rendered
bytes, negotiated as prometheus-client negotiates (text or OpenMetrics, gzip or not); other
methods, ``name[]`` filters and other registries go to prometheus-client's own WSGI app,
which renders them sample by sample as before.

Scrapes read the metric registry (its updates are lock-protected) and an immutable snapshot of
the latest results, so a scrape answers even while every probe is stalled, and never triggers
or waits for a probe. Authentication and extra headers are not here: the server wraps this app
in ``exporter.web.auth.protect``, so every route, 404s included, is covered the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, make_wsgi_app

from exporter.exposition import Registry, render
from exporter.result import JobKey, ProbeResult
from exporter.web.landing import landing_page
from exporter.web.wsgi import Environ, StartResponse, WsgiApp, respond

LIFECYCLE_FLAG = "--web.enable-lifecycle"


@dataclass(frozen=True)
class WebHooks:
    """What the endpoints need from the daemon, as plain callables (thread-safe)."""

    healthy: Callable[[], bool]
    reload: Callable[[], tuple[bool, str]]
    results: Callable[[], Mapping[JobKey, ProbeResult | None]]
    version: str
    # Seconds spent producing a /metrics answer, without the socket writes (self-metrics).
    rendered: Callable[[float], None] = lambda seconds: None


def make_app(
    registry: CollectorRegistry, hooks: WebHooks, *, enable_lifecycle: bool = False
) -> WsgiApp:
    """The dispatcher. ``POST /-/reload`` works only with ``enable_lifecycle``, as in
    Prometheus: anyone who can reach the port could otherwise make the exporter re-read its
    config at will. SIGHUP reloads either way, since sending it needs access to the host."""
    metrics_app = make_wsgi_app(registry)
    if isinstance(registry, Registry):
        metrics_app = _prerendered(registry, metrics_app, hooks.rendered)

    def healthy(environ: Environ, start: StartResponse) -> Iterable[bytes]:
        if hooks.healthy():
            return respond(start, "200 OK", "Healthy\n")
        return respond(start, "503 Service Unavailable", "scheduler not running\n")

    def reload(environ: Environ, start: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return respond(
                start, "405 Method Not Allowed", "use POST to reload\n", headers=[("Allow", "POST")]
            )
        if not enable_lifecycle:
            return respond(
                start,
                "403 Forbidden",
                f"reload over HTTP is disabled: start the exporter with {LIFECYCLE_FLAG} "
                "to enable it (SIGHUP always reloads)\n",
            )
        ok, message = hooks.reload()
        return respond(start, "200 OK" if ok else "500 Internal Server Error", message + "\n")

    def index(environ: Environ, start: StartResponse) -> Iterable[bytes]:
        return respond(start, "200 OK", landing_page(hooks.version, hooks.results()), "text/html")

    routes: dict[str, WsgiApp] = {
        "/metrics": metrics_app,
        "/-/healthy": healthy,
        "/-/reload": reload,
        "/": index,
    }

    def app(environ: Environ, start: StartResponse) -> Iterable[bytes]:
        route = routes.get(environ.get("PATH_INFO", "/"))
        if route is None:
            return respond(start, "404 Not Found", "not found\n")
        return route(environ, start)

    return app


def _prerendered(
    registry: Registry, fallback: WsgiApp, rendered: Callable[[float], None]
) -> WsgiApp:
    """``/metrics`` from pre-rendered bytes: a GET without ``name[]`` filters; anything else
    goes to ``fallback`` (prometheus-client's app), which answers it as it always did."""

    def app(environ: Environ, start: StartResponse) -> Iterable[bytes]:
        filtered = "name[]" in parse_qs(environ.get("QUERY_STRING", ""))
        if environ.get("REQUEST_METHOD") != "GET" or filtered:
            return fallback(environ, start)
        begin = time.perf_counter()
        answer = render(registry, environ.get("HTTP_ACCEPT"), environ.get("HTTP_ACCEPT_ENCODING"))
        headers = [("Content-Type", answer.content_type), ("Content-Length", str(answer.length))]
        if answer.gzipped:
            headers.append(("Content-Encoding", "gzip"))
        start("200 OK", headers)
        return _timed(answer.body, time.perf_counter() - begin, rendered)

    return app


def _timed(
    body: Iterable[bytes], spent: float, rendered: Callable[[float], None]
) -> Iterator[bytes]:
    """``body``, piece by piece, adding the time taken to produce each piece to ``spent``
    (the plain-text body is joined lazily, while the server writes it); reported once the
    last piece is out. The time between pieces is the server writing them: not counted."""
    pieces = iter(body)
    while True:
        begin = time.perf_counter()
        piece = next(pieces, None)
        spent += time.perf_counter() - begin
        if piece is None:
            rendered(spent)
            return
        yield piece
