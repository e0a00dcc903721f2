"""The benchmark suite in one table: each number beside a baseline measured in the same run.

Bare times say little on a shared 2-core machine whose load changes by the minute, so every
row is an error against a scripted truth or a ratio to a baseline that ran in the same
invocation, interleaved with the exporter where it can be:

- CPU per streamed chunk (``benchmarks.cpu_per_chunk``) against the classic loop (``requests``
  + ``iter_lines`` + ``json.loads``), plain httpx and the bare-protocol floor, with a
  prototype of the exporter's decoder on the bare protocol (what httpx's layers cost);
- TTFT and tokens/s errors against the simulator's scripted truth (``benchmarks.accuracy``),
  for the exporter, plain httpx and the floor;
- TTFT and tokens/s errors with ~200 streams in flight, against the servers' write
  timestamps (``benchmarks.load_accuracy``): the exporter as it runs (jobs spread by phase,
  kernel arrival stamps) beside jobs in step with loop stamps (as before), in one run, with
  the event loop's lag and the runs' start delays;
- scrapes at fleet size (``benchmarks.scrape``) against prometheus-client rendering the same
  samples (the recorder as it was), with the memory of both and of an idle one-job daemon.

    python -m benchmarks [--quick]      # make bench
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import accuracy, cpu_per_chunk, load_accuracy, scrape
from exporter.config import Target
from exporter.ollama.client import OllamaClient
from tests.support.jobs import make_job
from tests.support.processes import simulator_process

# The goals the rows are read against.
CPU_RATIO_GOAL = 1 / 3
LOAD_RATE_PCT_GOAL = 1.0
LOOP_LAG_P99_MS_GOAL = 5.0
SCRAPE_MS_GOAL = 50.0
BURST_MS_GOAL = 1000.0
RSS_MIB_GOAL = 200.0
IDLE_RSS_MIB_GOAL = 60.0


@dataclass(frozen=True)
class Sizes:
    """How much of everything to run: the full suite, or a smoke run for the tests."""

    cpu_rounds: int = 7
    cpu_tokens: int = 1000
    accuracy_runs: int = 12
    accuracy_scenarios: tuple[str, ...] = tuple(s.name for s in accuracy.SCENARIOS)
    load: load_accuracy.Load = field(default_factory=load_accuracy.Load)
    load_rounds: int = 2
    load_seconds: float = 10.0
    load_warmup: float = 7.5
    targets: int = 100
    models: int = 10
    profiles: int = 2
    scrapes: int = 10
    burst_s: float = 5.0
    idle: bool = True


FULL = Sizes()
QUICK = Sizes(cpu_rounds=3, cpu_tokens=300, accuracy_runs=4, load_rounds=1, load_seconds=5.0,
              targets=20, scrapes=5, burst_s=2.0)  # fmt: skip
SMOKE = Sizes(cpu_rounds=1, cpu_tokens=20, accuracy_runs=1, accuracy_scenarios=("gpu-like",),
              load=load_accuracy.Load(targets=2, models=2, interval_s=1.0, tokens=4),
              load_rounds=1, load_seconds=1.0, load_warmup=0.5,
              targets=1, models=2, scrapes=1, burst_s=0.3, idle=False)  # fmt: skip


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({model}), load average {load}; Python "
        f"{platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


class Table:
    """Rows of: what, the exporter's value, the baseline, the ratio, the goal."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, what: str, ours: str, base: str = "", ratio: str = "", goal: str = "") -> None:
        self.rows.append((what, ours, base, ratio, goal))

    def render(self) -> list[str]:
        head = ("measure", "exporter", "baseline (same run)", "ratio", "goal")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(5)]
        fmt = "  ".join(f"{{:{'<' if i in (0, 2) else '>'}{w}}}" for i, w in enumerate(widths))
        lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*row).rstrip() for row in self.rows]
        return lines


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def cpu_rows(table: Table, sizes: Sizes) -> None:
    apis = ("generate", "chat", "openai")
    rows = cpu_per_chunk.run(sizes.cpu_rounds, sizes.cpu_tokens, apis, interval=0.0005)
    for api, row in rows.items():
        ours = statistics.median(row.samples["exporter"])
        ratio = statistics.median(row.ratios("exporter"))
        table.add(
            f"CPU µs/chunk, {api}",
            f"{ours:.1f}",
            f"classic loop {statistics.median(row.samples['classic']):.1f}",
            f"{ratio:.2f}",
            f"≤ {CPU_RATIO_GOAL:.2f} {verdict(ratio <= CPU_RATIO_GOAL)}",
        )
        for base in ("plain httpx", "floor"):
            table.add(
                "",
                "",
                f"{base} {statistics.median(row.samples[base]):.1f}",
                f"{statistics.median(row.ratios('exporter', base)):.2f}",
            )
        table.add(
            "  lean transport (prototype)",
            f"{statistics.median(row.samples['lean']):.1f}",
            "classic loop",
            f"{statistics.median(row.ratios('lean')):.2f}",
        )


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):+.2f}"


def accuracy_rows(table: Table, sizes: Sizes) -> None:
    """TTFT error (ms) and tokens/s error (%) per scenario, medians over the probes."""
    gc.collect()
    with simulator_process() as sim:
        for scenario in accuracy.SCENARIOS:
            accuracy._SCRIPTS[scenario.name] = scenario.script
            accuracy._put_script(sim.url, scenario.name, scenario.script)
        for scenario in accuracy.SCENARIOS:
            if scenario.name not in sizes.accuracy_scenarios:
                continue
            s = scenario.script
            job = make_job(sim.url, scenario.name, max_tokens=scenario.max_tokens, timeout="60s")
            runs = (
                sizes.accuracy_runs if s.first_token_delay < 1 else max(1, sizes.accuracy_runs // 4)
            )
            measured: dict[str, tuple[list[float], list[float]]] = {}
            factories: dict[str, Callable[[Target], OllamaClient]] = {
                "exporter": accuracy._lean,
                "plain httpx": accuracy._plain_httpx,
            }
            for name, factory in factories.items():
                measured[name] = asyncio.run(accuracy._measure(factory, job, runs))
            floor = asyncio.run(
                accuracy._floor(sim.url, scenario.name, s.first_token_delay, max(1, runs // 2))
            )
            tol = 2 + 10 * s.first_token_delay
            table.add(
                f"TTFT error ms, {scenario.name}",
                _median(measured["exporter"][0]),
                f"plain httpx {_median(measured['plain httpx'][0])}, floor {_median(floor)}",
                "",
                f"±{tol:.1f}",
            )
            table.add(
                f"tokens/s error %, {scenario.name}",
                _median(measured["exporter"][1]),
                f"plain httpx {_median(measured['plain httpx'][1])}",
                "",
                "±1",
            )


def load_rows(table: Table, sizes: Sizes) -> None:
    """Accuracy with ~200 streams in flight: the exporter as it runs (spread, kernel stamps)
    beside the exporter as it was (in step, loop stamps), in the same interleaved rounds."""
    load = sizes.load
    totals, targets = load_accuracy.measure(
        load, rounds=sizes.load_rounds, seconds=sizes.load_seconds, warmup=sizes.load_warmup,
        processes=2 if load.targets > 2 else 1,
    )  # fmt: skip
    now, before = totals["spread"], totals["in-step"]
    ours = load_accuracy.summarise(now, True, targets)
    base = load_accuracy.summarise(before, False, targets)
    streams = f"{load.targets * load.models} jobs"
    table.add(
        f"TTFT error ms, {streams} (median/worst job)",
        f"{ours.ttft_median_ms:+.2f} / {ours.ttft_worst_ms:+.2f}",
        f"in step, loop stamps {base.ttft_median_ms:+.2f} / {base.ttft_worst_ms:+.2f}",
        "",
        f"2 ms + 1 %: {ours.within}/{ours.jobs} jobs {verdict(ours.within == ours.jobs)}",
    )
    table.add(
        f"tokens/s error %, {streams} (median/worst job)",
        f"{ours.rate_median_pct:+.2f} / {ours.rate_worst_pct:+.2f}",
        f"in step, loop stamps {base.rate_median_pct:+.2f} / {base.rate_worst_pct:+.2f}",
        "",
        f"±{LOAD_RATE_PCT_GOAL:.0f} {verdict(abs(ours.rate_worst_pct) <= LOAD_RATE_PCT_GOAL)}",
    )
    lag = load_accuracy.quantile(now.loop_lag_ms, 0.99)
    table.add(
        f"loop lag ms p99, {streams}",
        f"{lag:.1f}",
        f"in step {load_accuracy.quantile(before.loop_lag_ms, 0.99):.1f}",
        "",
        f"≤ {LOOP_LAG_P99_MS_GOAL:.0f} {verdict(lag <= LOOP_LAG_P99_MS_GOAL)}",
    )
    table.add(
        f"probe start delay ms p99, {streams}",
        f"{load_accuracy.quantile(now.start_delay_ms, 0.99):.1f}",
        f"in step {load_accuracy.quantile(before.start_delay_ms, 0.99):.1f}",
    )


def scrape_rows(table: Table, sizes: Sizes) -> None:
    fleet = (sizes.targets, sizes.models, sizes.profiles)
    ours = scrape.measure_fleet(*fleet, sizes.scrapes, sizes.burst_s)
    base = scrape.measure_fleet(*fleet, max(1, sizes.scrapes // 3), sizes.burst_s, baseline=True)
    first = ours.text[0]
    table.add(
        f"/metrics of {ours.jobs} jobs",
        f"{first.body_bytes / 1e6:.1f} MB",
        f"{first.lines} lines, {first.lines / ours.jobs:.0f} per job; gzip "
        f"{ours.gzipped[0].wire_bytes / 1e6:.2f} MB",
    )
    for what, mine, theirs, goal in (
        ("scrape ms, gzip, at rest", ours.gzipped, base.gzipped, SCRAPE_MS_GOAL),
        ("scrape ms, gzip, 33 results/s", ours.steady, base.steady, SCRAPE_MS_GOAL),
        ("scrape ms, text, at rest", ours.text, base.text, SCRAPE_MS_GOAL),
        ("scrape ms, OpenMetrics, at rest", ours.openmetrics, base.openmetrics, SCRAPE_MS_GOAL),
        ("scrape ms during a burst", ours.burst, base.burst, BURST_MS_GOAL),
    ):
        median, worst = scrape.Report.ms(mine)
        base_median, base_worst = scrape.Report.ms(theirs)
        table.add(
            f"{what} (median/max)",
            f"{median:.1f} / {worst:.1f}",
            f"prometheus-client {base_median:.0f} / {base_worst:.0f}",
            f"{median / base_median:.3f}",
            f"median ≤ {goal:.0f} {verdict(median <= goal)}",
        )
    table.add(
        "CPU µs per recorded result",
        f"{ours.record_us:.0f}",
        f"prometheus-client {base.record_us:.0f}",
        f"{ours.record_us / base.record_us:.2f}",
    )
    table.add(
        "RSS MiB at rest / peak",
        f"{ours.rss_rest_mib:.0f} / {ours.rss_peak_mib:.0f}",
        f"prometheus-client {base.rss_rest_mib:.0f} / {base.rss_peak_mib:.0f}",
        f"{ours.rss_peak_mib / base.rss_peak_mib:.2f}",
        f"≤ {RSS_MIB_GOAL:.0f} {verdict(ours.rss_peak_mib <= RSS_MIB_GOAL)}",
    )
    if sizes.idle:
        idle = scrape.idle_rss_mib()
        table.add(
            "idle RSS MiB, one-job daemon",
            f"{idle:.0f}",
            "",
            "",
            f"≤ {IDLE_RSS_MIB_GOAL:.0f} {verdict(idle <= IDLE_RSS_MIB_GOAL)}",
        )


def run(sizes: Sizes) -> list[str]:
    header = [f"make bench: {machine()}"]
    table = Table()
    cpu_rows(table, sizes)
    accuracy_rows(table, sizes)
    load_rows(table, sizes)
    scrape_rows(table, sizes)
    return [*header, *table.render()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, 400 jobs")
    args = parser.parse_args(argv)
    print("\n".join(run(QUICK if args.quick else FULL)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
