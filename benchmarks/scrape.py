"""Scrape cost at fleet size: /metrics of N jobs, at rest and while results pour in.

The exporter side runs in a child process (``--serve``), built as the daemon builds it
(``new_registry``, ``ExporterMetrics``, ``Recorder``, ``make_app`` behind ``WebServer``), with
every job holding one successful and one failed probe, so every family it can show has
samples. The parent scrapes it over loopback as Prometheus would and reads the child's memory
from ``/proc``:

- at rest: plain text, gzip (what Prometheus asks for) and OpenMetrics, each timed from the
  request to the last byte of the body;
- in the steady state: results arrive at the fleet's pace (2,000 jobs every 60 s, 33 a
  second), so every scrape finds something changed, as Prometheus's would; gzip, as
  Prometheus asks;
- during a burst: a thread in the child records a result for every job, round after round and
  as fast as it can (the start-up burst, when every job fires at once, is milder), while the
  parent keeps scraping; the thread's CPU time per result is what recording costs the event
  loop;
- idle: the real daemon (``python -m exporter``) with one job against the simulator, its RSS
  after a few scrapes.

The baseline (``--baseline``) is the same child with the recorder as it was before
pre-rendering (``benchmarks.baseline_recorder``: prometheus-client's metric classes, served by
prometheus-client's own WSGI app), the same buckets and the same results.

    python -m benchmarks.scrape [--targets 100 --models 10 --profiles 2] [--scrapes N]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from benchmarks import baseline_recorder
from exporter.recorder import ExporterMetrics, Recorder, new_registry
from exporter.result import JobKey, JobShape, ProbeResult, Reason, ServerStats
from exporter.web import WebHooks, WebServer, make_app
from tests.support.processes import exporter_process, simulator_process

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
_BUFFER = bytearray()  # the scrape client's receive buffer, reused


def fleet(targets: int, models: int, profiles: int) -> list[JobKey]:
    """Every (target, model, profile) job, named as a fleet would name them."""
    return [
        JobKey(
            f"gpu-{t:03d}",
            f"model{m}:8b",
            ("short", "prefill", "par4")[p % 3],
            JobShape(parallel=4 if p % 3 == 2 else 1),
        )
        for t in range(targets)
        for m in range(models)
        for p in range(profiles)
    ]


def success(key: JobKey, i: int) -> ProbeResult:
    """A plausible successful run (its streams, when parallel), varied a little by ``i``."""
    stats = ServerStats(eval_count=64, eval_duration_ns=1_280_000_000 + i, prompt_eval_count=30,
                        prompt_eval_duration_ns=20_000_000, load_duration_ns=3_000_000 + i,
                        done_reason="length")  # fmt: skip
    one = ProbeResult(job=key, finished_at=1.8e9 + i, reason=None, elapsed_ns=1_500_000_000 + i,
                      ttft_ns=200_000_000 + i, ttfct_ns=300_000_000, decode_span_ns=1_260_000_000,
                      output_tokens=64, text_chunks=64, t0_ns=0, server=stats)  # fmt: skip
    if key.shape.parallel == 1:
        return one
    return dataclasses.replace(one, streams=(one,) * key.shape.parallel)


def failure(key: JobKey, i: int) -> ProbeResult:
    reason = (Reason.TIMEOUT_STALL, Reason.CONNECT_ERROR)[i % 2]
    return ProbeResult(job=key, finished_at=1.8e9 + i, reason=reason, elapsed_ns=30_000_000_000)


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


# --- the exporter side (child process) ---------------------------------------------------


def _baseline_registry() -> tuple[CollectorRegistry, baseline_recorder.Recorder]:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry, baseline_recorder.Recorder(registry)


def serve(targets: int, models: int, profiles: int, baseline: bool) -> int:
    """Build the metrics as the daemon does, serve them, and obey commands on stdin."""
    registry: CollectorRegistry
    recorder: Recorder | baseline_recorder.Recorder
    if baseline:
        registry, recorder = _baseline_registry()
    else:
        registry = new_registry()
        recorder = Recorder(registry)
    ExporterMetrics(registry, "bench").config_loaded(True, time.time())
    jobs = fleet(targets, models, profiles)
    recorder.sync_jobs(jobs)
    for i, key in enumerate(jobs):
        recorder.record(success(key, i))
        recorder.record(failure(key, i))
    hooks = WebHooks(healthy=lambda: True, reload=lambda: (True, ""), results=dict,
                     version="bench")  # fmt: skip
    web = WebServer("127.0.0.1", 0, make_app(registry, hooks))
    web.start()
    lock = threading.Lock()  # the daemon records from one thread: the event loop

    def burst(seconds: float, rate: float) -> None:
        """Results for ``seconds``: ``rate`` a second, or as fast as possible (0)."""
        start = time.monotonic()
        end = start + seconds
        n = 0
        cpu = time.thread_time()
        while (now := time.monotonic()) < end:
            if rate and n > (now - start) * rate:
                time.sleep(0.005)
                continue
            key = jobs[n % len(jobs)]
            with lock:
                recorder.record(success(key, n) if n % 10 else failure(key, n))
            n += 1
        print(f"BURST {n} {(time.thread_time() - cpu) / max(n, 1) * 1e6:.1f}", flush=True)

    print(f"URL {web.local_url} {len(jobs)}", flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "burst":
            rate = float(args[1]) if len(args) > 1 else 0.0
            threading.Thread(target=burst, args=(float(args[0]), rate), daemon=True).start()
        elif command == "quit":
            break
    web.close()
    return 0


# --- the scraper (parent process) --------------------------------------------------------


@dataclass
class Scrape:
    seconds: float
    body_bytes: int
    wire_bytes: int
    lines: int


def scrape(url: str, *, encoding: str = "identity", accept: str = "") -> Scrape:
    """GET /metrics with a bare socket client, timed from connect to the body's last byte.

    Not urllib: reading tens of MB through http.client costs more than serving them, and
    Prometheus's client is Go; this one receives into a buffer kept from one scrape to the
    next (as Prometheus pools its scrape buffers), so the client's own page faults are not
    counted as the exporter's time.
    """
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    head = f"GET /metrics HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept-Encoding: {encoding}\r\n"
    if accept:
        head += f"Accept: {accept}\r\n"
    start = time.perf_counter()
    with socket.create_connection((parts.hostname, parts.port), timeout=120) as sock:
        sock.sendall((head + "Connection: close\r\n\r\n").encode())
        received = bytearray()
        while b"\r\n\r\n" not in received:
            piece = sock.recv(65536)
            if not piece:
                raise RuntimeError(f"no response head: {bytes(received[:200])!r}")
            received += piece
        header, _, rest = bytes(received).partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in header.decode("latin-1").split("\r\n")[1:])
        length = int(fields["Content-Length"])
        if len(_BUFFER) < length:
            _BUFFER.extend(bytes(length - len(_BUFFER)))
        view = memoryview(_BUFFER)
        view[: len(rest)] = rest
        got = len(rest)
        while got < length:
            n = sock.recv_into(view[got:])
            if not n:
                raise RuntimeError(f"body cut at {got} of {length} bytes")
            got += n
    seconds = time.perf_counter() - start
    data = bytes(view[:length])
    view.release()
    body = gzip.decompress(data) if fields.get("Content-Encoding") == "gzip" else data
    return Scrape(seconds, len(body), len(data), body.count(b"\n"))


@dataclass
class Report:
    """What one fleet run measured; times in ms, memory in MiB."""

    jobs: int
    text: list[Scrape] = field(default_factory=list)
    gzipped: list[Scrape] = field(default_factory=list)
    openmetrics: list[Scrape] = field(default_factory=list)
    burst: list[Scrape] = field(default_factory=list)
    steady: list[Scrape] = field(default_factory=list)
    record_us: float = 0.0
    first: Scrape | None = None
    burst_results: int = 0
    rss_rest_mib: float = 0.0
    rss_peak_mib: float = 0.0

    @staticmethod
    def ms(scrapes: list[Scrape]) -> tuple[float, float]:
        times = [s.seconds * 1000 for s in scrapes]
        return statistics.median(times), max(times)


@contextlib.contextmanager
def serving(
    targets: int, models: int, profiles: int, baseline: bool
) -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    sizes = ["--targets", str(targets), "--models", str(models), "--profiles", str(profiles)]
    argv = [sys.executable, "-m", "benchmarks.scrape", "--serve", *sizes]
    if baseline:
        argv.append("--baseline")
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        if not line.startswith("URL "):
            raise RuntimeError(f"scrape server did not start: {line!r}")
        _, url, jobs = line.split()
        yield proc, url, int(jobs)
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.write("quit\n")
            proc.stdin.flush()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure_fleet(
    targets: int,
    models: int,
    profiles: int,
    scrapes: int,
    burst_s: float,
    *,
    baseline: bool = False,
) -> Report:
    """Scrapes at rest (``scrapes`` of text and of gzip, a third as many of OpenMetrics), then
    scrapes for ``burst_s`` seconds while the child records results."""
    with serving(targets, models, profiles, baseline) as (proc, url, jobs):
        assert proc.stdin is not None
        assert proc.stdout is not None
        report = Report(jobs)
        report.first = scrape(url)  # the first scrape: caches, lazy imports
        report.rss_rest_mib = rss_kib(proc.pid)[0] / 1024
        for _ in range(scrapes):
            report.text.append(scrape(url))
            report.gzipped.append(scrape(url, encoding="gzip"))
        for _ in range(max(1, scrapes // 3)):
            report.openmetrics.append(scrape(url, accept=OPENMETRICS))
        steady_s = max(1.0, scrapes * 0.3)
        proc.stdin.write(f"burst {steady_s} {jobs / 60}\n")
        proc.stdin.flush()
        end = time.monotonic() + steady_s
        while time.monotonic() < end - 0.3 or not report.steady:
            time.sleep(0.1)  # a few results land between two scrapes
            report.steady.append(scrape(url, encoding="gzip"))
        proc.stdout.readline()
        proc.stdin.write(f"burst {burst_s}\n")
        proc.stdin.flush()
        end = time.monotonic() + burst_s
        time.sleep(0.05)
        while time.monotonic() < end - 0.2 or not report.burst:
            encoding = ("identity", "gzip")[len(report.burst) % 2]
            report.burst.append(scrape(url, encoding=encoding))
        _, results, record_us = proc.stdout.readline().split()
        report.burst_results = int(results)
        report.record_us = float(record_us)
        report.rss_peak_mib = rss_kib(proc.pid)[1] / 1024
        return report


def idle_rss_mib(scrapes: int = 3) -> float:
    """RSS of the real daemon with one job against the simulator, after a few scrapes."""
    with simulator_process() as sim, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "one.yml"
        config.write_text(
            f'targets:\n  - url: "{sim.url}"\n    models: ["llama3.2:1b"]\n'
            'probes:\n  - name: short\n    interval: "5s"\n    max_tokens: 8\n'
        )
        with exporter_process(config) as exporter:
            time.sleep(1.0)  # the first probe has run
            for _ in range(scrapes):
                scrape(exporter.url)
            return rss_kib(exporter.proc.pid)[0] / 1024


def lines(report: Report, base: Report | None, idle: float | None) -> list[str]:
    """A short summary of one run (the suite's table is ``benchmarks.__main__``)."""
    first = report.text[0]
    out = [f"{report.jobs} jobs: /metrics {first.body_bytes / 1e6:.1f} MB, {first.lines} lines"]
    for name, ours, theirs in (
        ("text", report.text, base.text if base else []),
        ("gzip", report.gzipped, base.gzipped if base else []),
        ("OpenMetrics", report.openmetrics, base.openmetrics if base else []),
        ("steady gzip", report.steady, base.steady if base else []),
        ("burst", report.burst, base.burst if base else []),
    ):
        median, worst = Report.ms(ours)
        line = f"  {name:<12} median {median:8.1f} ms  max {worst:8.1f} ms"
        if theirs:
            line += f"   prometheus-client median {Report.ms(theirs)[0]:8.1f} ms"
        out.append(line)
    out.append(f"  RSS at rest {report.rss_rest_mib:.0f} MiB, peak {report.rss_peak_mib:.0f} MiB")
    out.append(f"  recording: {report.record_us:.0f} µs of CPU per result")
    if idle is not None:
        out.append(f"  idle RSS of a one-job daemon {idle:.0f} MiB")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--profiles", type=int, default=2)
    parser.add_argument("--scrapes", type=int, default=10)
    parser.add_argument("--burst", type=float, default=5.0, help="seconds of results")
    parser.add_argument("--no-idle", action="store_true", help="skip the one-job daemon")
    parser.add_argument("--no-baseline", action="store_true", help="skip prometheus-client's")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.targets, args.models, args.profiles, args.baseline)
    sizes = (args.targets, args.models, args.profiles)
    report = measure_fleet(*sizes, args.scrapes, args.burst)
    base = None
    if not args.no_baseline:
        base = measure_fleet(*sizes, max(1, args.scrapes // 3), args.burst, baseline=True)
    idle = None if args.no_idle else idle_rss_mib()
    print("\n".join(lines(report, base, idle)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
