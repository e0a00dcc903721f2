"""The web server's endpoints and listen addresses, over real loopback HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping

import pytest
from prometheus_client import CollectorRegistry, Gauge

from exporter.result import JobKey, ProbeResult, Reason
from exporter.web import WebHooks, WebServer, make_app
from tests.support.processes import http_get

KEY = JobKey("gpu-box-1", "llama3.2:1b", "short")


def hooks(healthy: bool = True) -> WebHooks:
    results: Mapping[JobKey, ProbeResult | None] = {
        KEY: ProbeResult(job=KEY, finished_at=0.0, reason=Reason.SERVER_BUSY, detail="HTTP 503")
    }
    return WebHooks(
        healthy=lambda: healthy,
        reload=lambda: (False, "reload refused"),
        results=lambda: results,
        version="9.9.9",
    )


@pytest.fixture(params=["127.0.0.1", "::1"])
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    registry = CollectorRegistry()
    Gauge("demo_gauge", "A gauge.", registry=registry).set(3)
    web = WebServer(request.param, 0, make_app(registry, hooks()))
    web.start()
    host = f"[{request.param}]" if ":" in request.param else request.param
    yield f"http://{host}:{web.port}"
    web.close()


def test_routes(server: str) -> None:
    """/metrics serves the registry, / lists jobs, unknown paths 404, on IPv4 and IPv6."""
    status, body = http_get(server + "/metrics")
    assert status == 200
    assert "demo_gauge 3.0" in body
    status, page = http_get(server + "/")
    assert status == 200
    assert "server_busy" in page
    assert "9.9.9" in page
    assert http_get(server + "/-/healthy")[0] == 200
    assert http_get(server + "/nope")[0] == 404


def test_reload_refusal_is_500_with_reason(server: str) -> None:
    """A refused reload answers 500 with the problems; GET is not allowed."""
    req = urllib.request.Request(server + "/-/reload", method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
        status, body = 200, ""
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read().decode()
    assert status == 500
    assert "reload refused" in body
    assert http_get(server + "/-/reload")[0] == 405


def test_unhealthy_is_503() -> None:
    """Health reports 503 when the scheduler is not running."""
    web = WebServer("127.0.0.1", 0, make_app(CollectorRegistry(), hooks(healthy=False)))
    web.start()
    try:
        assert http_get(f"http://127.0.0.1:{web.port}/-/healthy")[0] == 503
    finally:
        web.close()
