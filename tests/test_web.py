"""The web server's endpoints, lifecycle gate, landing page and addresses, over loopback HTTP."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping

import pytest
from prometheus_client import CollectorRegistry, Gauge

from exporter.result import DETAIL_MAX_BYTES, JobKey, ProbeResult, Reason, SkipReason
from exporter.web import LIFECYCLE_FLAG, WebHooks, WebServer, make_app
from exporter.web.landing import landing_page
from exporter.web.server import format_address, local_host
from tests.support.processes import http_get

KEY = JobKey("gpu-box-1", "llama3.2:1b", "short")


def hooks(
    healthy: bool = True,
    detail: str = "HTTP 503",
    reloads: list[str] | None = None,
) -> WebHooks:
    results: Mapping[JobKey, ProbeResult | None] = {
        KEY: ProbeResult(job=KEY, finished_at=0.0, reason=Reason.SERVER_BUSY, detail=detail)
    }

    def reload() -> tuple[bool, str]:
        if reloads is not None:
            reloads.append("called")
        return False, "reload refused"

    return WebHooks(
        healthy=lambda: healthy,
        reload=reload,
        results=lambda: results,
        version="9.9.9",
    )


def post(url: str) -> tuple[int, str]:
    req = urllib.request.Request(url, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def serve(host: str, app_hooks: WebHooks, *, enable_lifecycle: bool = False) -> WebServer:
    registry = CollectorRegistry()
    Gauge("demo_gauge", "A gauge.", registry=registry).set(3)
    web = WebServer(host, 0, make_app(registry, app_hooks, enable_lifecycle=enable_lifecycle))
    web.start()
    return web


@pytest.fixture(params=["127.0.0.1", "::1"])
def server(request: pytest.FixtureRequest) -> Iterator[WebServer]:
    web = serve(request.param, hooks(), enable_lifecycle=True)
    yield web
    web.close()


def test_routes(server: WebServer) -> None:
    """/metrics serves the registry, / lists jobs, unknown paths 404, on IPv4 and IPv6."""
    status, body = http_get(server.url + "/metrics")
    assert status == 200
    assert "demo_gauge 3.0" in body
    status, page = http_get(server.url + "/")
    assert status == 200
    assert "server_busy" in page
    assert "9.9.9" in page
    assert http_get(server.url + "/-/healthy")[0] == 200
    assert http_get(server.url + "/nope")[0] == 404


def test_metrics_keeps_prometheus_client_features(server: WebServer) -> None:
    """``name[]`` filtering, gzip and OpenMetrics negotiation come from make_wsgi_app."""
    status, body = http_get(server.url + "/metrics?name[]=nothing_by_that_name")
    assert status == 200
    assert "demo_gauge" not in body
    req = urllib.request.Request(
        server.url + "/metrics",
        headers={"Accept-Encoding": "gzip", "Accept": "application/openmetrics-text"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")


def test_reload_refusal_is_500_with_reason(server: WebServer) -> None:
    """With the lifecycle flag, a refused reload answers 500 with the problems; GET is 405."""
    status, body = post(server.url + "/-/reload")
    assert status == 500
    assert "reload refused" in body
    assert http_get(server.url + "/-/reload")[0] == 405


def test_reload_without_lifecycle_flag_is_403_and_never_reloads() -> None:
    """Without --web.enable-lifecycle, POST /-/reload is refused and names the flag."""
    calls: list[str] = []
    web = serve("127.0.0.1", hooks(reloads=calls))
    try:
        status, body = post(web.url + "/-/reload")
    finally:
        web.close()
    assert status == 403
    assert LIFECYCLE_FLAG in body
    assert LIFECYCLE_FLAG == "--web.enable-lifecycle"
    assert calls == []


def test_unhealthy_is_503() -> None:
    """Health reports 503 when the scheduler is not running."""
    web = serve("127.0.0.1", hooks(healthy=False))
    try:
        assert http_get(web.url + "/-/healthy")[0] == 503
    finally:
        web.close()


def test_landing_page_clips_server_supplied_detail() -> None:
    """A huge error detail from a probed server is cut, so the page stays small."""
    huge = "<x>" + "A" * 100_000
    page = landing_page("1.0", {KEY: ProbeResult(KEY, 0.0, Reason.HTTP_ERROR, detail=huge)})
    assert len(page) < 2_000 + 6 * DETAIL_MAX_BYTES
    assert "A" * DETAIL_MAX_BYTES not in page
    assert "&lt;x&gt;" + "A" * (DETAIL_MAX_BYTES - 6) + "…" in page  # cut, then escaped
    short = landing_page("1.0", {KEY: ProbeResult(KEY, 0.0, Reason.HTTP_ERROR, detail="HTTP 500")})
    assert "HTTP 500</td>" in short


def test_landing_page_shows_skips_and_parallel_runs() -> None:
    """A skipped run says so (not FAIL); a parallel run shows its slowest first token and
    its aggregate tokens/s."""
    skipped = ProbeResult(KEY, 0.0, None, skipped=SkipReason.NOT_LOADED, detail="not loaded")
    assert "<td>skipped: not_loaded</td>" in landing_page("1.0", {KEY: skipped})
    streams = tuple(
        ProbeResult(
            KEY, 0.0, None, ttft_ns=ttft_ms * 1_000_000, t0_ns=0, elapsed_ns=10**9, output_tokens=50
        )
        for ttft_ms in (100, 400)
    )
    page = landing_page("1.0", {KEY: ProbeResult(KEY, 0.0, None, streams=streams)})
    assert "<td>ok</td><td>0.400 s</td><td>100.0</td>" in page


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]"])
def test_url_reports_the_bound_address_and_port(host: str) -> None:
    """Asked for port 0, the server reports the real port, with IPv6 in brackets."""
    web = WebServer(host, 0, make_app(CollectorRegistry(), hooks()))
    try:
        assert web.port != 0
        bare = host.strip("[]")
        expected = f"[{bare}]:{web.port}" if ":" in bare else f"{bare}:{web.port}"
        assert web.address == expected
        assert web.url == f"http://{expected}"
        assert web.local_url == web.url
        assert not web.tls
        assert not web.basic_auth
    finally:
        web.close()


def test_wildcard_addresses_format_as_bound() -> None:
    """The start-up log shows what is bound (all interfaces), not a loopback stand-in."""
    assert format_address("0.0.0.0", 10434) == "0.0.0.0:10434"
    assert format_address("::", 10434) == "[::]:10434"
    assert local_host("0.0.0.0") == "127.0.0.1"
    assert local_host("::") == "::1"
    assert local_host("192.0.2.1") == "192.0.2.1"


def test_close_without_start_releases_the_port() -> None:
    """A server closed before start() (daemon start-up failed later) frees its port."""
    web = WebServer("127.0.0.1", 0, make_app(CollectorRegistry(), hooks()))
    port = web.port
    web.close()
    again = WebServer("127.0.0.1", port, make_app(CollectorRegistry(), hooks()))
    again.close()


def test_scrapes_run_in_parallel_threads() -> None:
    """A slow route does not block a scrape: each connection has its own thread."""
    entered, release = threading.Event(), threading.Event()

    def slow_reload() -> tuple[bool, str]:
        entered.set()
        release.wait(30)
        return True, "reloaded"

    slow = WebHooks(healthy=lambda: True, reload=slow_reload, results=lambda: {}, version="1")
    web = serve("127.0.0.1", slow, enable_lifecycle=True)
    result: list[tuple[int, str]] = []
    poster = threading.Thread(target=lambda: result.append(post(web.url + "/-/reload")))
    poster.start()
    try:
        assert entered.wait(30)
        assert http_get(web.url + "/metrics")[0] == 200
    finally:
        release.set()
        poster.join()
        web.close()
    assert result == [(200, "reloaded\n")]
