"""Soak: the real daemon probing many jobs every second for a long time; does anything grow?

Runs the exporter as its own process (as deployed) against the simulator in another process,
with more than 30 jobs at a 1 s interval: healthy models, and models that fail mid-stream,
truncate, stall, answer 503, 500 or malformed lines. Three hostile targets of the
benchmark's own add what the simulator does not do: a gzip body, a 1 MiB error line, and a
server that never answers. Every ``--sample-every`` seconds it samples the daemon's
resident memory, open file descriptors (``/proc/PID/fd``) and threads (``/proc/PID/status``),
and how long one scrape of ``/metrics`` takes, then prints a table and the first, last and
largest figure of each with a verdict: "flat", or how much it grew.

    python -m benchmarks.soak --minutes 20 [--sample-every 30]

Descriptors and memory move with the probes in flight at the moment of a sample (each holds
a socket and its buffers), so the verdict compares floors: the least value seen in the
earlier and in the later half of the run, after a warm-up of two minutes (a quarter of a
short run) in which caches, histogram buckets and the allocator's arenas fill once. A leak
raises the floor; probes in flight do not. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import Fault, ModelScript, script_to_dict
from tests.hostile.server import (
    JSON,
    NDJSON,
    VERSION,
    HostileServer,
    Request,
    fixed,
    hang,
    line,
    send,
    stream,
    text_line,
)
from tests.support.processes import RunningProcess, exporter_process, simulator_process

HEALTHY = ModelScript(first_token_delay=0.05, tokens_per_second=80.0, tokens=64)
SIM_MODELS: dict[str, ModelScript] = {
    **{f"ok-{i}:1b": HEALTHY for i in range(8)},
    "slow:1b": ModelScript(first_token_delay=0.4, tokens_per_second=20.0, tokens=64),
    "crash:1b": ModelScript(tokens=64, fault=Fault.MID_STREAM_ERROR, fault_after=3),
    "truncate:1b": ModelScript(tokens=64, fault=Fault.TRUNCATE, fault_after=3),
    "stall:1b": ModelScript(tokens=64, fault=Fault.STALL, fault_after=2, stall_seconds=3.0),
    "busy:1b": ModelScript(fault=Fault.BUSY),
    "http500:1b": ModelScript(first_token_delay=0.05, fault=Fault.HTTP_500),
    "malformed:1b": ModelScript(tokens=64, fault=Fault.MALFORMED, fault_after=2),
}
PROFILES = ("generate", "chat")  # every model probed through both APIs
HOSTILE_PATHS = ("gzip", "huge-error", "silent")
HUGE_ERROR_BYTES = 1024 * 1024
# How far the floor of the later half may sit above that of the earlier half and still be
# "flat": a descriptor or thread held by something slow to close at that moment, a few
# pages the allocator has not given back.
FD_SLACK = 2
THREAD_SLACK = 1
RSS_SLACK_MIB = 2.0
SETTLE_S = 120.0


async def hostile(request: Request, writer: asyncio.StreamWriter) -> None:
    """``/gzip``: a compressed stream; ``/huge-error``: a 1 MiB ``{"error": …}`` line;
    ``/silent``: reads the request and never answers (also to ``/api/version``)."""
    prefix = request.path.split("/")[1]
    if prefix == "silent":
        await hang(request, writer)
    elif request.path.endswith("/api/version"):
        await send(writer, fixed(200, VERSION, [JSON]))
    elif prefix == "gzip":
        body = gzip.compress(text_line("a") * 64)
        await send(writer, fixed(200, body, [NDJSON, ("Content-Encoding", "gzip")]))
    else:
        await send(writer, stream(text_line("a"), line({"error": "x" * HUGE_ERROR_BYTES})))


def simulator_script() -> str:
    return json.dumps({"models": {name: script_to_dict(s) for name, s in SIM_MODELS.items()}})


def soak_config(simulator_url: str, hostile_url: str) -> str:
    """One simulator target (all its models) and one target per hostile path; every model is
    probed with every profile, each job every second."""
    hostile_targets = "".join(
        f"  - {{name: {path}, url: '{hostile_url}/{path}', models: [m]}}\n"
        for path in HOSTILE_PATHS
    )
    profiles = "".join(
        f"  - {{name: {api}, api: {api}, max_tokens: 16, interval: 1s, timeout: 5s, "
        "stall_timeout: 1s}\n"
        for api in PROFILES
    )
    return (
        textwrap.dedent(f"""\
            targets:
              - name: sim
                url: {simulator_url}
                models: {json.dumps(list(SIM_MODELS))}
                concurrency: 16
            """)
        + hostile_targets
        + "probes:\n"
        + profiles
    )


def job_count() -> int:
    return (len(SIM_MODELS) + len(HOSTILE_PATHS)) * len(PROFILES)


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    rss_mib: float
    fds: int
    threads: int
    scrape_ms: float
    runs: int
    failed: int


@dataclass
class Report:
    pid: int
    jobs: int
    samples: list[Sample] = field(default_factory=list)
    log_lines: int = 0
    tracebacks: int = 0
    errors: int = 0


def proc_status(pid: int) -> tuple[float, int]:
    """Resident memory (MiB) and thread count of ``pid``, from ``/proc/PID/status``."""
    fields = {}
    for text in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = text.partition(":")
        fields[key] = value.split()
    return int(fields["VmRSS"][0]) / 1024, int(fields["Threads"][0])


def scrape(url: str) -> tuple[float, int, int]:
    """One ``/metrics`` scrape: its duration (ms), and the probes run and failed so far."""
    started = time.perf_counter()
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        body = response.read().decode()
    took_ms = (time.perf_counter() - started) * 1000
    runs = failed = 0.0
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == "ollama_probe_runs_total":
                runs += s.value
            elif s.name == "ollama_probe_errors_total":
                failed += s.value
    return took_ms, int(runs), int(failed)


def take_sample(exporter: RunningProcess, started: float) -> Sample:
    pid = exporter.proc.pid
    if exporter.proc.poll() is not None:
        raise RuntimeError(f"the exporter exited with {exporter.proc.returncode}")
    rss, threads = proc_status(pid)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    scrape_ms, runs, failed = scrape(exporter.url)
    return Sample(time.monotonic() - started, rss, fds, threads, scrape_ms, runs, failed)


def print_row(sample: Sample, out: TextIO) -> None:
    print(
        f"{sample.elapsed_s / 60:8.1f} {sample.rss_mib:9.1f} {sample.fds:5d} {sample.threads:7d} "
        f"{sample.scrape_ms:9.1f} {sample.runs:8d} {sample.failed:8d}",
        file=out,
        flush=True,
    )


def verdict(early: float, late: float, slack: float, unit: str, minutes: float) -> str:
    growth = late - early
    if growth <= slack:
        return "flat"
    per_hour = growth / minutes * 60 if minutes > 0 else float("nan")
    return f"grew by {growth:.1f} {unit} (about {per_hour:.1f} {unit}/hour)"


def halves(samples: Sequence[Sample]) -> tuple[list[Sample], list[Sample]]:
    """The samples past the warm-up (``SETTLE_S``, at most a quarter of the run), split in
    an earlier and a later half (one sample can be both). The first minutes fill caches,
    histogram buckets and the allocator's arenas once: growth, but not a leak."""
    settle = min(SETTLE_S, samples[-1].elapsed_s / 4)
    after = [s for s in samples if s.elapsed_s >= settle]
    middle = len(after) // 2
    return after[: max(middle, 1)], after[middle:]


def summary(report: Report) -> list[str]:
    """First, last and largest figure of each measure, and its floor (the least value seen)
    in each half of the settled run; the verdict compares the two floors.

    A floor, not a single sample: every probe in flight holds a socket and some memory, so
    one sample can catch 0 or 16 of them; a leak is what is still held when none is."""
    samples = report.samples
    first, last = samples[0], samples[-1]
    early, late = halves(samples)
    minutes = (late[-1].elapsed_s - early[0].elapsed_s) / 60
    rows = [
        ("RSS MiB", "rss_mib", RSS_SLACK_MIB, "MiB"),
        ("open fds", "fds", FD_SLACK, "fds"),
        ("threads", "threads", THREAD_SLACK, "threads"),
    ]

    def span(part: list[Sample]) -> str:
        return f"{part[0].elapsed_s / 60:.0f}-{part[-1].elapsed_s / 60:.0f}m"

    lines = [
        f"{'':10} {'first':>8} {'last':>8} {'max':>8}  {'floor ' + span(early):>14} "
        f"{'floor ' + span(late):>14}  verdict"
    ]
    for label, attr, slack, unit in rows:
        values = [getattr(s, attr) for s in samples]
        floors = [min(getattr(s, attr) for s in part) for part in (early, late)]
        judged = verdict(floors[0], floors[1], slack, unit, minutes)
        lines.append(
            f"{label:10} {values[0]:8.1f} {values[-1]:8.1f} {max(values):8.1f}  "
            f"{floors[0]:14.1f} {floors[1]:14.1f}  {judged}"
        )
    scrapes = sorted(s.scrape_ms for s in samples)
    lines.append(
        f"{'scrape ms':10} {first.scrape_ms:8.1f} {last.scrape_ms:8.1f} {scrapes[-1]:8.1f}  "
        f"median {scrapes[len(scrapes) // 2]:.1f}"
    )
    rate = (last.runs - first.runs) / max(last.elapsed_s - first.elapsed_s, 1e-9)
    lines.append(
        f"probes: {last.runs} run, {last.failed} failed ({rate:.1f} per second between the "
        f"first and last sample); log: {report.log_lines} lines, {report.errors} at level "
        f"error, {report.tracebacks} tracebacks"
    )
    return lines


@contextmanager
def soak_setup(tmp: Path) -> Iterator[tuple[RunningProcess, HostileServer]]:
    """The simulator, the hostile server and the exporter probing both, until the block ends."""
    script = tmp / "script.json"  # JSON is YAML
    script.write_text(simulator_script())
    with HostileServer(hostile) as server, simulator_process(script) as simulator:
        config = tmp / "config.yml"
        config.write_text(soak_config(simulator.url, server.url))
        with exporter_process(config) as exporter:
            yield exporter, server


def soak(minutes: float, sample_every: float, out: TextIO = sys.stdout) -> Report:
    """Run the soak; print each sample as it is taken, then the summary."""
    with tempfile.TemporaryDirectory() as tmp, soak_setup(Path(tmp)) as (exporter, server):
        report = Report(exporter.proc.pid, job_count())
        print(
            f"soak: {report.jobs} jobs every 1 s for {minutes:g} min, a sample every "
            f"{sample_every:g} s; exporter pid {report.pid}, {os.cpu_count()} CPUs",
            file=out,
        )
        print(
            f"{'minutes':>8} {'RSS MiB':>9} {'fds':>5} {'threads':>7} {'scrape ms':>9} "
            f"{'runs':>8} {'failed':>8}",
            file=out,
        )
        started = time.monotonic()
        end = started + minutes * 60
        while True:
            sample = take_sample(exporter, started)
            report.samples.append(sample)
            server.requests.clear()  # the hostile server keeps every request: bound our own memory
            print_row(sample, out)
            now = time.monotonic()
            if now >= end:
                break
            time.sleep(min(sample_every, end - now))
    log = exporter.log()
    report.log_lines = log.count("\n")
    report.errors = log.count("level=error")
    report.tracebacks = log.count("Traceback")
    print("", *summary(report), sep="\n", file=out)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="how long to run")
    parser.add_argument(
        "--sample-every", type=float, default=30.0, metavar="SECONDS", help="between samples"
    )
    args = parser.parse_args(argv)
    soak(args.minutes, args.sample_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
