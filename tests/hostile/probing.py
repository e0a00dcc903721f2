"""Probing hostile servers and checking what every hostile case must leave behind.

- ``probe`` runs one probe with a fresh client and proves the client kept no connection;
- ``peak_memory`` measures the Python heap's high-water mark around a block (tracemalloc
  sees every allocation the prober makes, decoded bodies and parsed JSON included);
- ``beside_healthy`` runs a hostile probe and, through the same runner, a well-behaved
  target back to back: the healthy target stays on schedule when no gap between its probes
  comes near the hostile probe's own duration (a prober that stops yielding freezes the
  whole event loop for all of it). tracemalloc would slow every allocation several-fold and
  distort those gaps, so memory is watched there as resident-set growth instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from exporter.clock import SystemClock
from exporter.config import JobSpec, Settings, load_settings
from exporter.ollama.client import OllamaClient
from exporter.probe import run_probe
from exporter.result import ProbeResult
from exporter.runner import ProbeRunner
from tests.hostile.server import HostileServer
from tests.support.jobs import make_job

MIB = 1024 * 1024
SMALL_PEAK = 8 * MIB
MAX_HEALTHY_RUNS = 10_000


def open_connections(client: OllamaClient) -> int:
    """Connections the client's pool still holds (white-box: httpx has no public count)."""
    return len(client._client._transport._pool.connections)  # type: ignore[attr-defined]


async def probe(url: str, **profile: Any) -> ProbeResult:
    """One probe of model ``m`` at ``url``; fails the test if the client kept a connection."""
    profile.setdefault("timeout", "5s")
    profile.setdefault("stall_timeout", "2s")
    job = make_job(url, "m", **profile)
    client = OllamaClient(job.target)
    try:
        result = await asyncio.wait_for(run_probe(client, job, SystemClock()), 60)
        assert open_connections(client) == 0, "the probe left a connection in the pool"
        return result
    finally:
        await client.aclose()


@dataclass
class Peak:
    bytes: int = 0


@contextmanager
def peak_memory() -> Iterator[Peak]:
    """The largest amount of Python heap in use, beyond what was in use at the start."""
    peak = Peak()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    start, _ = tracemalloc.get_traced_memory()
    try:
        yield peak
    finally:
        _, high = tracemalloc.get_traced_memory()
        peak.bytes = high - start
        if not was_tracing:
            tracemalloc.stop()


async def probe_hostile(server: HostileServer, **profile: Any) -> ProbeResult:
    """``probe`` of ``server``, which must then see every connection closed, in under
    ``SMALL_PEAK`` of heap (the responses here are all small)."""
    with peak_memory() as peak:
        result = await probe(server.url, **profile)
    await server.wait_released()
    assert peak.bytes < SMALL_PEAK, peak.bytes
    return result


def rss_bytes() -> int | None:
    """The process's resident set size, where ``/proc`` tells it (Linux); else None."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def settings_for(urls: dict[str, str], **profile: Any) -> Settings:
    """Settings with one target per ``name: url``, model ``m`` on each, one profile ``p``."""
    targets = [{"name": name, "url": url, "models": ["m"]} for name, url in urls.items()]
    environ = {
        "OLLAMA_PROBE_TARGETS": json.dumps(targets),
        "OLLAMA_PROBE_PROBES": json.dumps([{"name": "p", **profile}]),
    }
    return load_settings(None, environ)


def two_targets(hostile_url: str, healthy_url: str, **profile: Any) -> Settings:
    """Settings with targets ``hostile`` and ``healthy``; a 1 s timeout unless told."""
    profile.setdefault("timeout", "1s")
    profile.setdefault("stall_timeout", "500ms")
    return settings_for({"hostile": hostile_url, "healthy": healthy_url}, **profile)


async def run_all(settings: Settings) -> list[ProbeResult]:
    """Every job of ``settings`` once, concurrently, through one runner."""
    runner = ProbeRunner(SystemClock())
    runner.configure(settings.targets)
    try:
        jobs = settings.jobs()
        return await asyncio.wait_for(asyncio.gather(*(runner.run(j) for j in jobs)), 60)
    finally:
        await runner.aclose()


@dataclass
class Beside:
    """A hostile probe's result and what a healthy target did meanwhile."""

    hostile: ProbeResult
    hostile_s: float
    healthy: list[ProbeResult] = field(default_factory=list)
    gaps_s: list[float] = field(default_factory=list)
    rss_growth: int | None = None

    def assert_healthy_on_schedule(self) -> None:
        """Healthy probes kept completing, all of them successfully, throughout the hostile
        probe. A frozen loop leaves room for one or two of them and one gap as long as the
        hostile probe itself; a starved one stretches every gap. Loopback probes take
        milliseconds, so the bounds, fractions of the hostile probe's own duration, leave
        a busy machine a wide margin (its worst gaps were a few tenths of a second)."""
        gaps = sorted(self.gaps_s)
        assert len(gaps) >= 4, f"{len(gaps)} healthy probes in {self.hostile_s:.2f} s"
        failed = [r for r in self.healthy if not r.success]
        assert not failed, failed[0]
        assert gaps[len(gaps) // 2] < self.hostile_s / 4, (gaps, self.hostile_s)
        assert gaps[-1] < self.hostile_s * 3 / 4, (gaps, self.hostile_s)

    def assert_memory_flat(self, bound: int = 64 * MIB) -> None:
        """The process grew by less than ``bound`` while the hostile probe ran (where the
        platform tells the resident set size)."""
        if self.rss_growth is not None:
            assert self.rss_growth < bound, self.rss_growth


async def beside_healthy(settings: Settings) -> Beside:
    """Run the ``hostile`` job once, and ``healthy`` back to back until it is over."""
    jobs: dict[str, JobSpec] = {spec.target.name: spec for spec in settings.jobs()}
    runner = ProbeRunner(SystemClock())
    runner.configure(settings.targets)
    loop = asyncio.get_running_loop()
    try:
        rss_start = rss_bytes()
        rss_high = rss_start
        started = loop.time()
        task = asyncio.create_task(runner.run(jobs["hostile"]))
        healthy: list[ProbeResult] = []
        gaps: list[float] = []
        last = started
        while not task.done() and len(healthy) < MAX_HEALTHY_RUNS:
            healthy.append(await runner.run(jobs["healthy"]))
            now = loop.time()
            gaps.append(now - last)
            last = now
            rss = rss_bytes()
            if rss is not None and rss_high is not None:
                rss_high = max(rss_high, rss)
        hostile = await asyncio.wait_for(task, 60)
        growth = None if rss_start is None or rss_high is None else rss_high - rss_start
        return Beside(hostile, loop.time() - started, healthy, gaps, growth)
    finally:
        await runner.aclose()
