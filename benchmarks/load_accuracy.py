"""Accuracy under load: TTFT and tokens/s with ~200 streams in flight, against the server's
own write timestamps, and what the exporter's event loop goes through meanwhile.

The load: 20 targets x 10 models (``concurrency: 10``), one generate profile every 5 s, each
stream 100 ms to its first token, then 200 tokens at 50 tok/s: about 160-200 streams at once
and ~8,000-10,000 chunks a second into one exporter process. The simulators run in separate
processes (two by default, ten targets each), as remote servers would, and record when they
wrote each chunk; the truth is those records, not the script, so a simulator that falls
behind its script under this load does not count against the exporter. (The simulators do
not spin for punctuality here: the schedule does not matter, and the spinning would take
the CPU the exporter is measured on.)

For each probe: TTFT error = reported ``t0 + TTFT`` - the server's write of the first text
chunk (both on the host's monotonic clock), and tokens/s error = reported rate / the rate of
the server's writes of the first and last text chunks - 1. Each job's errors are averaged
over its runs; the table shows the median and worst job, and how many jobs are within
2 ms + 1 % of their TTFT. Alongside, in the same run: the event loop's lag (``LoopLagMonitor``)
and how late runs started (the scheduler's start delay), over the measured window; and from
``t0`` to when the server had read the request (connect and send, the client's delays in
them included, and the server's own).

Two schedules, against the same simulators: every job in step (all start together, as
before phases existed) or spread by phase. In both, every other target's arrivals are
stamped by the kernel (``SO_TIMESTAMPNS``) and the others' by the event loop, so the two
kinds of stamp meet the same load at the same time. The schedules take turns in rounds, so
that a change in what else the machine runs falls on both alike; the first ``--warmup``
seconds of each round are not measured (the first runs come in a burst, the phases apply
from the second). Loop lag, start delay and CPU are the process's, shared by both rows of
a schedule.

    python -m benchmarks.load_accuracy [--rounds 3] [--seconds 10] [--schedules in-step,spread]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from unittest import mock

from exporter.clock import SystemClock
from exporter.config import Settings, build_settings
from exporter.looplag import LoopLagMonitor
from exporter.ollama import receive_time
from exporter.result import NS_PER_S, ProbeResult
from exporter.runner import ProbeRunner
from exporter.scheduler import ProbeScheduler, phase_fraction
from exporter.simulator import ModelScript, OllamaSimulator, generation


@dataclass(frozen=True)
class Load:
    targets: int = 20
    models: int = 10
    interval_s: float = 5.0
    first_token_s: float = 0.1
    tokens: int = 200
    tokens_per_second: float = 50.0

    def model_names(self) -> list[str]:
        return [f"m{i}" for i in range(self.models)]

    def script(self) -> ModelScript:
        # More tokens than asked for: every probe ends on max_tokens (done_reason length).
        return ModelScript(
            first_token_delay=self.first_token_s,
            tokens_per_second=self.tokens_per_second,
            tokens=self.tokens * 2,
        )


# How jobs are placed in their interval: all at once (as before phases), or by phase.
SCHEDULES = {"in-step": True, "spread": False}


def kernel_stamped(target_index: int) -> bool:
    """Every other target's client gets kernel stamps, the rest the loop's: the two kinds
    of stamp are compared on the same load, at the same time."""
    return target_index % 2 == 0


def row_name(in_step: bool, kernel: bool) -> str:
    name = f"{'in step' if in_step else 'spread'}, {'kernel' if kernel else 'loop'} stamps"
    if in_step and not kernel:
        return name + " (before)"
    return name + " (now)" if kernel and not in_step else name


# The simulator side: a process serving several targets.


def serve(targets: int, load: Load) -> None:
    """Serve ``targets`` simulators (every model of ``load``) until SIGTERM; print their URLs
    as one JSON line once they accept connections."""
    generation.SPIN_NS = 0  # timers only: punctuality is not needed, the CPU is

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        scripts = {name: load.script() for name in load.model_names()}
        sims = [OllamaSimulator(scripts) for _ in range(targets)]
        for sim in sims:
            await sim.start()
        gc.collect()
        gc.freeze()
        print(json.dumps([sim.url for sim in sims]), flush=True)
        await stop.wait()
        for sim in sims:
            await sim.close()

    asyncio.run(main())


@contextlib.contextmanager
def simulators(load: Load, processes: int) -> Iterator[list[str]]:
    """Start the simulator processes; yield every target's URL; stop them."""
    share = [load.targets // processes + (i < load.targets % processes) for i in range(processes)]
    procs: list[subprocess.Popen[str]] = []
    try:
        for count in share:
            argv = [sys.executable, "-m", "benchmarks.load_accuracy", "--serve", str(count),
                    *_load_args(load)]  # fmt: skip
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
        urls: list[str] = []
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("a simulator process exited before serving")
            urls += json.loads(line)
        yield urls
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _load_args(load: Load) -> list[str]:
    return ["--models", str(load.models), "--first-token", str(load.first_token_s),
            "--tokens", str(load.tokens), "--rate", str(load.tokens_per_second)]  # fmt: skip


def _control(url: str, method: str) -> Any:
    req = urllib.request.Request(f"{url}/_simulator/requests", method=method)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


# The exporter side: the real runner and scheduler, in this process.


def settings_for(urls: Sequence[str], load: Load) -> Settings:
    return build_settings(
        {
            "targets": [
                {
                    "name": f"t{i:02d}",
                    "url": url,
                    "models": load.model_names(),
                    "concurrency": load.models,
                }
                for i, url in enumerate(urls)
            ],
            "probes": [
                {
                    "name": "gen",
                    "api": "generate",
                    "max_tokens": load.tokens,
                    "interval": f"{load.interval_s:g}s",
                    "timeout": "60s",
                    "stall_timeout": "30s",
                }
            ],
        },
        environ={},
    )


@dataclass
class Outcome:
    """What one schedule measured, per job (``target/model``) where it is per probe."""

    in_step: bool
    ttft_err_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    ttft_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    rate_err_pct: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    sent_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    loop_lag_ms: list[float] = field(default_factory=list)
    start_delay_ms: list[float] = field(default_factory=list)
    failed: int = 0
    unmatched: int = 0
    cpu_seconds: float = 0.0  # this process's, over the measured windows
    seconds: float = 0.0  # measured

    def add(self, other: Outcome) -> None:
        """Fold another round of the same schedule into this one."""
        for mine, theirs in ((self.ttft_err_ms, other.ttft_err_ms), (self.ttft_ms, other.ttft_ms),
                             (self.rate_err_pct, other.rate_err_pct),
                             (self.sent_ms, other.sent_ms)):  # fmt: skip
            for key, values in theirs.items():
                mine[key] += values
        self.loop_lag_ms += other.loop_lag_ms
        self.start_delay_ms += other.start_delay_ms
        self.failed += other.failed
        self.unmatched += other.unmatched
        self.cpu_seconds += other.cpu_seconds
        self.seconds += other.seconds


class Measured(NamedTuple):
    """What the comparison needs of a ProbeResult: plain values only. Holding the results
    themselves (with their /api/ps inventories) would grow the collector's work through
    the run, and with it the event loop's lag, which the daemon does not do."""

    target: str
    model: str
    success: bool
    t0_ns: int | None
    ttft_ns: int | None
    tokens_per_second: float | None


def _measured(result: ProbeResult) -> Measured:
    job = result.job
    return Measured(job.target, job.model, result.success, result.t0_ns, result.ttft_ns,
                    result.tokens_per_second)  # fmt: skip


def _sampler(values: list[float], window: list[float]) -> Callable[[float], None]:
    """Records a value (in ms) if it comes between ``window[0]`` and ``window[1]``."""

    def observe(seconds: float) -> None:
        if window[0] <= time.monotonic() <= window[1]:
            values.append(seconds * 1000)

    return observe


async def run_round(in_step: bool, urls: Sequence[str], load: Load, seconds: float,
                    warmup: float) -> Outcome:  # fmt: skip
    settings = settings_for(urls, load)
    for url in urls:
        await asyncio.to_thread(_control, url, "DELETE")
    outcome = Outcome(in_step)
    results: list[Measured] = []
    runner = ProbeRunner(SystemClock())
    kernel = receive_time.available()
    stamps = [kernel and kernel_stamped(i) for i in range(len(settings.targets))]
    with mock.patch.object(receive_time, "available", side_effect=stamps):
        runner.configure(settings.targets)  # one client, so one backend, per target
    await runner.warm_up()
    begin = time.monotonic() + warmup
    window = [begin, begin + seconds]
    monitor = LoopLagMonitor(_sampler(outcome.loop_lag_ms, window))
    scheduler = ProbeScheduler(
        runner.run,
        lambda result: results.append(_measured(result)),
        phase=(lambda _: 0.0) if in_step else phase_fraction,
        on_start_delay=_sampler(outcome.start_delay_ms, window),
    )
    monitor.start()
    scheduler.start(settings.jobs())
    await asyncio.sleep(warmup)
    cpu = time.process_time()
    await asyncio.sleep(seconds)
    outcome.cpu_seconds, outcome.seconds = time.process_time() - cpu, seconds
    # Runs that start in the window and finish: one run's length more, and a quarter of it
    # for a loaded machine.
    run_s = load.first_token_s + load.tokens / load.tokens_per_second
    await asyncio.sleep(run_s + max(0.25, run_s / 4))
    await scheduler.shutdown()
    monitor.stop()
    await runner.aclose()
    records = {url: await asyncio.to_thread(_control, url, "GET") for url in urls}
    _compare(outcome, settings, results, records, window)
    return outcome


def _compare(
    outcome: Outcome,
    settings: Settings,
    results: list[Measured],
    records: dict[str, list[dict[str, Any]]],
    window: list[float],
) -> None:
    """Match each probe to the server's record of it and note its errors."""
    urls = {t.name: t.url for t in settings.targets}
    served: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for url, recs in records.items():
        for rec in recs:
            if rec["path"] == "/api/generate" and rec["text_write_ns"]:
                served[(url.rstrip("/"), rec["body"]["model"])].append(rec)
    lo, hi = (round(w * NS_PER_S) for w in window)
    for result in results:
        if result.t0_ns is None or not lo <= result.t0_ns <= hi:
            continue
        if not result.success or result.ttft_ns is None or result.tokens_per_second is None:
            outcome.failed += 1
            continue
        t_first = result.t0_ns + result.ttft_ns
        candidates = [
            r for r in served[(urls[result.target].rstrip("/"), result.model)]
            if result.t0_ns <= r["received_ns"] <= t_first
        ]  # fmt: skip
        if len(candidates) != 1:
            outcome.unmatched += 1
            continue
        writes = candidates[0]["text_write_ns"]
        key = f"{result.target}/{result.model}"
        outcome.sent_ms[key].append((candidates[0]["received_ns"] - result.t0_ns) / 1e6)
        outcome.ttft_err_ms[key].append((t_first - writes[0]) / 1e6)
        outcome.ttft_ms[key].append(result.ttft_ns / 1e6)
        truth = (len(writes) - 1) / ((writes[-1] - writes[0]) / NS_PER_S)
        outcome.rate_err_pct[key].append((result.tokens_per_second / truth - 1) * 100)


# The table.


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Summary(NamedTuple):
    """One row's numbers: per-job means of one kind of stamp under one schedule."""

    probes: int
    jobs: int
    within: int  # jobs whose mean TTFT error is within 2 ms + 1 % of their TTFT
    ttft_median_ms: float
    ttft_worst_ms: float
    rate_median_pct: float
    rate_worst_pct: float


def summarise(outcome: Outcome, kernel: bool, targets: list[str]) -> Summary:
    wanted = {t for i, t in enumerate(targets) if kernel_stamped(i) == kernel}
    jobs = sorted(j for j in outcome.ttft_err_ms if j.split("/")[0] in wanted)
    ttft = [statistics.fmean(outcome.ttft_err_ms[j]) for j in jobs]
    within = sum(
        abs(statistics.fmean(outcome.ttft_err_ms[j]))
        <= 2 + 0.01 * statistics.fmean(outcome.ttft_ms[j])
        for j in jobs
    )
    rate = [statistics.fmean(outcome.rate_err_pct[j]) for j in jobs]
    nan = float("nan")
    return Summary(
        probes=sum(len(outcome.ttft_err_ms[j]) for j in jobs),
        jobs=len(jobs),
        within=within,
        ttft_median_ms=statistics.median(ttft) if ttft else nan,
        ttft_worst_ms=max(ttft, key=abs) if ttft else nan,
        rate_median_pct=statistics.median(rate) if rate else nan,
        rate_worst_pct=max(rate, key=abs) if rate else nan,
    )


def _row(outcome: Outcome, kernel: bool, targets: list[str]) -> str:
    s = summarise(outcome, kernel, targets)
    wanted = {t for i, t in enumerate(targets) if kernel_stamped(i) == kernel}
    lag, delay = outcome.loop_lag_ms, outcome.start_delay_ms
    sent = [v for j, values in outcome.sent_ms.items() if j.split("/")[0] in wanted for v in values]
    return (
        f"{row_name(outcome.in_step, kernel):<30} {s.probes:>6}  "
        f"{s.ttft_median_ms:>+6.2f} {s.ttft_worst_ms:>+7.2f} "
        f"{s.within:>4}/{s.jobs:<4} "
        f"{s.rate_median_pct:>+6.2f} {s.rate_worst_pct:>+6.2f}  "
        f"{quantile(lag, 0.5):>5.1f} {quantile(lag, 0.99):>6.1f} {max(lag, default=0):>6.1f}  "
        f"{quantile(delay, 0.5):>5.1f} {quantile(delay, 0.99):>6.1f}  "
        f"{quantile(sent, 0.5):>5.1f} {quantile(sent, 0.99):>6.1f}  "
        f"{outcome.cpu_seconds / max(outcome.seconds, 1e-9) * 100:>4.0f}%  "
        f"{outcome.failed + outcome.unmatched:>4}"
    )


HEADER = (
    f"{'':<30} {'probes':>6}  {'TTFT error ms':^14} {'jobs ok':^9} "
    f"{'tok/s error %':^13}  {'loop lag ms':^19}  {'start delay ms':^12}  "
    f"{'t0 to request ms':^12}  {'CPU':>5}  {'lost':>4}\n"
    f"{'':<30} {'':>6}  {'median':>6} {'worst':>7} {'2ms+1%':^9} "
    f"{'median':>6} {'worst':>6}  {'p50':>5} {'p99':>6} {'max':>6}  {'p50':>5} {'p99':>6}  "
    f"{'p50':>5} {'p99':>6}"
)


def measure(
    load: Load,
    *,
    rounds: int,
    seconds: float,
    warmup: float,
    processes: int,
    names: Sequence[str] = tuple(SCHEDULES),
) -> tuple[dict[str, Outcome], list[str]]:
    """Every schedule in ``names``, in interleaved rounds; each schedule's outcome and the
    targets' names (in order: ``kernel_stamped`` takes their index)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # not one line per simulated target
    gc.collect()
    gc.freeze()  # as the daemon does after start-up
    try:
        totals = {name: Outcome(SCHEDULES[name]) for name in names}
        with simulators(load, processes) as urls:
            for _ in range(rounds):
                for name in names:
                    round_ = run_round(SCHEDULES[name], urls, load, seconds, warmup)
                    totals[name].add(asyncio.run(round_))
            targets = [t.name for t in settings_for(urls, load).targets]
    finally:
        # Given back: the suite runs in a test process, whose later tests read warnings.
        root.setLevel(level)
        gc.unfreeze()
    return totals, targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--first-token", type=float, default=0.1)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per round")
    parser.add_argument("--warmup", type=float, default=7.5, help="not measured, per round")
    parser.add_argument("--rounds", type=int, default=3, help="of each schedule, interleaved")
    parser.add_argument("--sim-processes", type=int, default=2)
    parser.add_argument("--schedules", default="in-step,spread", help="comma-separated")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    load = Load(args.targets, args.models, args.interval, args.first_token, args.tokens, args.rate)
    if args.serve is not None:
        serve(args.serve, load)
        return 0
    names = args.schedules.split(",")
    unknown = [n for n in names if n not in SCHEDULES]
    if unknown:
        parser.error(f"unknown schedules: {', '.join(unknown)}")
    print(
        f"{load.targets} targets x {load.models} models, one run every {load.interval_s:g} s: "
        f"{load.first_token_s * 1000:g} ms to the first token, {load.tokens} tokens at "
        f"{load.tokens_per_second:g} tok/s; {args.sim_processes} simulator processes; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; kernel receive "
        f"timestamps {'available' if receive_time.available() else 'NOT available'} (every "
        "other target uses them, the others the loop's)\n"
        f"{args.rounds} rounds of each schedule, interleaved, each {args.seconds:g} s measured "
        f"after {args.warmup:g} s; errors are measured - the server's write timestamps\n",
        flush=True,
    )
    print(HEADER, flush=True)
    totals, targets = measure(load, rounds=args.rounds, seconds=args.seconds,
                              warmup=args.warmup, processes=args.sim_processes,
                              names=names)  # fmt: skip
    for outcome in totals.values():
        for kernel in (False, True):
            print(_row(outcome, kernel, targets), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
