"""/metrics from pre-rendered bytes: the same text prometheus-client prints, in every format."""

from __future__ import annotations

import gzip
import threading
import urllib.request
import zlib

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from exporter import buckets, exposition
from exporter.exposition import Registry, render
from exporter.recorder import (
    ExporterMetrics,
    ProbeMetrics,
    Recorder,
    _count,
    _go,
    _Histogram,
    new_registry,
)
from exporter.result import JobKey, JobShape, ProbeResult, Reason, ServerStats
from exporter.web import WebHooks, WebServer, make_app

A = JobKey("gpu-1", 'odd "model"\\name at 100%d', "short")
B = JobKey("gpu-2", "qwen3:0.6b", "par", JobShape(parallel=2))
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def ok(key: JobKey, ttft_s: float, i: int = 0) -> ProbeResult:
    stats = ServerStats(eval_count=64, eval_duration_ns=1_280_000_000, prompt_eval_count=30,
                        prompt_eval_duration_ns=20_000_000, load_duration_ns=3_000_000)  # fmt: skip
    return ProbeResult(job=key, finished_at=1_800_000_000.25 + i, reason=None,
                       elapsed_ns=1_500_000_000, ttft_ns=round(ttft_s * 1e9), ttfct_ns=300_000_000,
                       decode_span_ns=1_260_000_000, output_tokens=64, t0_ns=0,
                       server=stats)  # fmt: skip


def probe_lines(text: str) -> list[str]:
    """The exposition's ollama_probe_* lines, headers included; the process metrics move."""
    return [line for line in text.splitlines() if "ollama_probe_" in line]


@pytest.fixture
def registry() -> Registry:
    registry = new_registry()
    recorder = Recorder(registry)
    ExporterMetrics(registry, "t").config_loaded(True, 5.0)
    recorder.sync_jobs([A, B])
    for i, ttft in enumerate((0.004, 0.2, 7.5, 1000.0)):
        recorder.record(ok(A, ttft, i))
    recorder.record(ProbeResult(job=A, finished_at=9.0, reason=Reason.TRUNCATED, elapsed_ns=10))
    return registry


def test_histogram_lines_are_prometheus_clients(registry: Registry) -> None:
    """The TTFT histogram reads as prometheus-client prints the same observations, bucket
    boundaries, escaping of label values and float formatting included."""
    reference = CollectorRegistry()
    ttft = Histogram("ollama_probe_time_to_first_token_seconds", "x",
                     ("target", "model", "probe", "parallel"), buckets=buckets.TTFT_BUCKETS,
                     registry=reference)  # fmt: skip
    for value in (0.004, 0.2, 7.5, 1000.0):
        ttft.labels(A.target, A.model, A.probe, "1").observe(value)
    expected = [
        line
        for line in generate_latest(reference).decode().splitlines()
        if line.startswith("ollama_probe_time_to_first_token_seconds_") and "gpu-1" in line
    ]
    text = b"".join(render(registry, None, None).body).decode()
    ours = [
        line
        for line in text.splitlines()
        if line.startswith("ollama_probe_time_to_first_token_seconds_") and "gpu-1" in line
    ]
    assert ours == expected
    assert len(expected) == len(buckets.TTFT_BUCKETS) + 3


@pytest.mark.parametrize("n", [0, 1, 12, 999_999, 1_000_000, 1_234_567, 10**16])
def test_counts_are_formatted_as_prometheus_client_does(n: int) -> None:
    assert _count(n) == floatToGoString(float(n))


@pytest.mark.parametrize(
    "value", [0.0, 0.1, 1e-7, 123456.789, 999_999.9, 1_000_000.0, 2.5e9, float("inf"),
              float("-inf"), float("nan"), -3.5, -2e7],
)  # fmt: skip
def test_values_are_formatted_as_prometheus_client_does(value: float) -> None:
    assert _go(value) == floatToGoString(value)


def test_a_million_observations_print_as_go_does() -> None:
    """Past a million, counts take Go's exponent form, in the template's place."""
    family = ProbeMetrics().ttft
    hist = _Histogram(len(family.buckets))
    hist.counts[0] = 1_500_000
    text = hist.render(family, 'model="m"', 'model="m"')
    assert f'{family.name}_bucket{{le="0.005",model="m"}} 1.5e+06\n' in text
    assert f'{family.name}_count{{model="m"}} 1.5e+06\n' in text


def test_fast_path_equals_prometheus_client_rendering(registry: Registry) -> None:
    """What /metrics serves equals generate_latest of the same registry (which goes through
    the collector's parsed families), line for line."""
    body = b"".join(render(registry, None, None).body).decode()
    assert probe_lines(body) == probe_lines(generate_latest(registry).decode())


def test_openmetrics_negotiation(registry: Registry) -> None:
    """OpenMetrics when asked: its content type, counters named without _total in HELP and
    TYPE, one # EOF at the very end, and the strict OpenMetrics parser accepts it."""
    answer = render(registry, OPENMETRICS, None)
    assert answer.content_type.startswith("application/openmetrics-text")
    text = b"".join(answer.body).decode()
    assert text.endswith("# EOF\n")
    assert text.count("# EOF") == 1
    assert "# TYPE ollama_probe_runs counter" in text
    families = {f.name: f for f in openmetrics_families(text)}
    runs = families["ollama_probe_runs"]
    assert {s.value for s in runs.samples if s.labels["target"] == "gpu-1"} == {5.0}


@pytest.mark.parametrize("module", ["isal", "zlib"])
def test_gzip_is_one_member_with_the_identity_body(
    registry: Registry, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gzip body is a single, complete gzip member (any client can read it) holding the
    same text as the identity body, with ISA-L or with the standard library's zlib."""
    if module == "zlib":
        monkeypatch.setattr(exposition, "deflate", zlib)
    zipped = render(registry, None, "gzip, deflate")
    assert zipped.gzipped
    data = b"".join(zipped.body)
    assert len(data) == zipped.length
    inflater = zlib.decompressobj(wbits=31)
    text = inflater.decompress(data) + inflater.flush()
    assert inflater.eof
    assert inflater.unused_data == b""
    plain = b"".join(render(registry, None, None).body)
    assert probe_lines(text.decode()) == probe_lines(plain.decode())


def test_a_registry_takes_one_prerendered_collector(registry: Registry) -> None:
    """A second recorder on a registry is refused, as prometheus-client refuses duplicate
    names: a scrape serves one cached deflate stream as it is."""
    with pytest.raises(ValueError, match="one pre-rendered collector"):
        Recorder(registry)


def test_gzip_without_a_prerendered_collector() -> None:
    """A registry with dynamic collectors only still gives one valid gzip member."""
    registry = new_registry()
    zipped = render(registry, None, "gzip")
    data = b"".join(zipped.body)
    assert len(data) == zipped.length
    # The same families (the process metrics' values move between two renders).
    headers = [line for line in gzip.decompress(data).splitlines() if line.startswith(b"#")]
    plain = b"".join(render(registry, None, None).body)
    assert headers
    assert headers == [line for line in plain.splitlines() if line.startswith(b"#")]


def test_families_follow_sync_and_results() -> None:
    """A reload drops a job's blocks; a later result of that job is not recorded."""
    registry = new_registry()
    recorder = Recorder(registry)
    recorder.sync_jobs([A, B])
    recorder.record(ok(B, 0.1))
    recorder.sync_jobs([A])
    text = b"".join(render(registry, None, None).body).decode()
    assert "gpu-2" not in text
    assert not recorder.record(ok(B, 0.1))
    assert "gpu-2" not in b"".join(render(registry, None, None).body).decode()


def hooks() -> WebHooks:
    return WebHooks(healthy=lambda: True, reload=lambda: (True, ""), results=dict, version="t")


def get(url: str, **headers: str) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(response.headers), response.read()


def test_http_formats_filters_and_scrapes_during_recording(registry: Registry) -> None:
    """Over loopback: gzip, OpenMetrics and name[] filters answer as prometheus-client's app
    would; scrapes taken while another thread records results always parse whole."""
    recorder = next(c for c in registry.collectors() if isinstance(c, Recorder))
    web = WebServer("127.0.0.1", 0, make_app(registry, hooks()))
    web.start()
    try:
        url = web.local_url + "/metrics"
        headers, body = get(url, **{"Accept-Encoding": "gzip"})
        assert headers["Content-Encoding"] == "gzip"
        assert int(headers["Content-Length"]) == len(body)
        assert "ollama_probe_runs_total" in gzip.decompress(body).decode()
        headers, body = get(url, Accept=OPENMETRICS)
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        _, body = get(url + "?name[]=ollama_probe_runs_total")
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        assert names == {"ollama_probe_runs"}

        stop = threading.Event()

        def record() -> None:
            i = 0
            while not stop.is_set() and i < 5000:
                recorder.record(ok(A if i % 2 else B, 0.1, i))
                i += 1

        writer = threading.Thread(target=record)
        writer.start()
        try:
            for _ in range(10):
                _, body = get(url)
                families = list(text_string_to_metric_families(body.decode()))
                assert any(f.name == "ollama_probe_runs" for f in families)
        finally:
            stop.set()
            writer.join()
    finally:
        web.close()
