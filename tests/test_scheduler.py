"""Scheduling rules with a scripted probe function (no network): start-up run, phases, no
overlap, errors contained, reload without a burst, skipped runs logged once, start delays,
and a clean shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobExecutionEvent

from exporter.config import JobSpec
from exporter.result import ProbeResult
from exporter.scheduler import STARTUP_SPREAD_S, PhaseTrigger, ProbeScheduler, phase_fraction
from tests.support.jobs import make_settings

URL = "http://127.0.0.1:9"  # never contacted: the probe function here is a fake


def jobs(models: list[str], interval: str) -> list[JobSpec]:
    return make_settings(URL, models, interval=interval, timeout="1s", stall_timeout="1s").jobs()


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll instead of sleeping a guessed time; fail if the condition never holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def result_for(spec: JobSpec) -> ProbeResult:
    return ProbeResult(job=spec.key, finished_at=0.0, reason=None)


class Recorder:
    """Counts calls, tracks concurrency per job, optionally sleeps or raises."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls: Counter[str] = Counter()
        self.running: Counter[str] = Counter()
        self.max_running = 0
        self.delay = delay
        self.fail = fail
        self.results: list[ProbeResult] = []

    async def probe(self, spec: JobSpec) -> ProbeResult:
        self.calls[spec.model] += 1
        self.running[spec.model] += 1
        self.max_running = max(self.max_running, self.running[spec.model])
        try:
            await asyncio.sleep(self.delay)
            if self.fail:
                raise RuntimeError("bug in a probe")
            return result_for(spec)
        finally:
            self.running[spec.model] -= 1


def in_step(_job_id: str) -> float:
    """Phase 0 for every job: all start at once, where phases are not what a test checks."""
    return 0.0


async def test_first_probe_runs_at_start_up() -> None:
    """With a 1 h interval, every job still runs once right away (phases at 0 here: the
    spread over the first second is ``test_first_runs_follow_the_phases``)."""
    rec = Recorder()
    sched = ProbeScheduler(rec.probe, rec.results.append, phase=in_step)
    sched.start(jobs(["a", "b"], "1h"))
    await wait_until(lambda: len(rec.results) == 2)
    await sched.shutdown()
    assert rec.calls == Counter({"a": 1, "b": 1})


async def test_a_job_never_overlaps_itself() -> None:
    """A probe slower than its interval (250 ms against 100 ms) is never run twice at once."""
    rec = Recorder(delay=0.25)
    sched = ProbeScheduler(rec.probe, rec.results.append, phase=in_step)
    sched.start(jobs(["a"], "100ms"))
    await wait_until(lambda: len(rec.results) >= 3)
    await sched.shutdown()
    assert rec.max_running == 1


async def test_probe_exceptions_are_contained() -> None:
    """A probe that raises does not stop its job: later runs still happen, nothing is recorded."""
    rec = Recorder(fail=True)
    sched = ProbeScheduler(rec.probe, rec.results.append, phase=in_step)
    sched.start(jobs(["a"], "100ms"))
    await wait_until(lambda: rec.calls["a"] >= 3)
    assert sched.running
    await sched.shutdown()
    assert rec.results == []


async def test_shutdown_cancels_in_flight_probes_quickly() -> None:
    """Shutdown cancels a probe stuck for an hour, waits for it, and records nothing for it."""
    rec = Recorder(delay=3600)
    sched = ProbeScheduler(rec.probe, rec.results.append, phase=in_step)
    sched.start(jobs(["a"], "1h"))
    await wait_until(lambda: rec.running["a"] == 1)
    loop = asyncio.get_running_loop()
    t = loop.time()
    await sched.shutdown(grace_s=2)
    assert loop.time() - t < 1.0
    assert rec.running["a"] == 0
    assert rec.results == []
    assert not sched.running


async def test_replace_jobs_keeps_schedule_of_unchanged_jobs() -> None:
    """A reload runs new jobs at once, does not re-run kept ones, and stops removed ones
    (phases at 0: where in the first second each job starts is not the point here). A kept
    job's next run is where it was, an interval away: read from the schedule rather than
    waited for, since a re-run that did not happen cannot be waited on."""
    rec = Recorder()
    sched = ProbeScheduler(rec.probe, rec.results.append, phase=in_step)
    sched.start(jobs(["a", "b"], "1h"))
    await wait_until(lambda: len(rec.results) == 2)
    kept_next_run = sched._scheduler.get_job("sim/a/p").next_run_time
    sched.replace_jobs(jobs(["a", "c"], "1h"))
    assert sched._scheduler.get_job("sim/a/p").next_run_time == kept_next_run
    assert sched._scheduler.get_job("sim/b/p") is None
    await wait_until(lambda: rec.calls["c"] == 1)
    await sched.shutdown()
    assert rec.calls == Counter({"a": 1, "b": 1, "c": 1})
    assert sched._epoch is not None
    assert kept_next_run == sched._epoch + timedelta(hours=1)


async def test_each_skipped_run_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A run skipped because the previous one is in flight is one warning, ours (with the
    job's name), not also APScheduler's."""
    caplog.set_level(logging.WARNING)
    skips: list[JobExecutionEvent] = []
    rec = Recorder(delay=0.35)
    sched = ProbeScheduler(rec.probe, rec.results.append)
    sched._scheduler.add_listener(skips.append, EVENT_JOB_MAX_INSTANCES)
    sched.start(jobs(["a"], "100ms"))
    await wait_until(lambda: len(skips) >= 2)
    await sched.shutdown()
    ours = [r for r in caplog.records if r.getMessage().startswith("probe run skipped")]
    assert len(ours) == len(skips)
    assert all(r.fields["job"] == "sim/a/p" for r in ours)  # type: ignore[attr-defined]
    assert [r for r in caplog.records if r.name.startswith("apscheduler")] == []


async def test_shutdown_right_after_start_leaves_no_job_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Runs created by APScheduler but not started yet when shutdown begins end quietly:
    nothing is logged as a job error, no probe is recorded."""
    for passes in range(4):  # shut down at each early point of the first runs' lives
        rec = Recorder(delay=3600)
        sched = ProbeScheduler(rec.probe, rec.results.append)
        sched.start(jobs(["a", "b"], "1h"))
        for _ in range(passes):
            await asyncio.sleep(0)
        await sched.shutdown(grace_s=2)
        await asyncio.sleep(0.05)  # APScheduler's own shutdown runs on a later loop pass
        assert rec.results == []
        assert not sched.running
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == []


def test_phases_are_stable_and_spread_evenly() -> None:
    """A job's phase is a function of its key alone, and a thousand keys cover the interval
    evenly: every tenth of it holds about a tenth of them."""
    keys = [f"target-{i % 50}/model-{i // 50}/p" for i in range(1000)]
    phases = [phase_fraction(key) for key in keys]
    assert phases == [phase_fraction(key) for key in keys]
    assert all(0.0 <= p < 1.0 for p in phases)
    per_tenth = Counter(int(p * 10) for p in phases)
    assert all(60 <= per_tenth[tenth] <= 140 for tenth in range(10)), per_tenth


def test_phase_trigger_keeps_to_its_grid() -> None:
    """Next run: the first grid point from now (no run yet), the next one after a run on the
    grid, and after an early first run the first one at least an interval later."""
    anchor = datetime(2030, 1, 1, 0, 0, 7, tzinfo=UTC)
    minute = timedelta(minutes=1)
    trigger = PhaseTrigger(minute, anchor)
    now = anchor + timedelta(minutes=5, seconds=30)
    assert trigger.get_next_fire_time(None, now) == anchor + 6 * minute
    assert trigger.get_next_fire_time(None, anchor + 2 * minute) == anchor + 2 * minute
    assert trigger.get_next_fire_time(anchor + 2 * minute, now) == anchor + 3 * minute
    early = anchor - timedelta(seconds=6)  # a start-up run before the phase
    assert trigger.get_next_fire_time(early, early) == anchor + minute


async def test_first_runs_follow_the_phases() -> None:
    """Jobs start in phase order over the first second, then move to their phase in the
    interval: the next run is on the grid, at least an interval after the first."""
    phases = {"sim/a/p": 0.6, "sim/b/p": 0.2}
    order: list[str] = []
    rec = Recorder()

    async def probe(spec: JobSpec) -> ProbeResult:
        order.append(spec.model)
        return await rec.probe(spec)

    sched = ProbeScheduler(probe, rec.results.append, phase=phases.__getitem__)
    sched.start(jobs(["a", "b"], "1h"))
    await wait_until(lambda: len(rec.results) == 2, timeout=5 + STARTUP_SPREAD_S)
    assert order == ["b", "a"]
    epoch = sched._epoch
    assert epoch is not None
    for job_id, phase in phases.items():
        job = sched._scheduler.get_job(job_id)
        assert job.next_run_time == epoch + timedelta(hours=phase) + timedelta(hours=1)
    await sched.shutdown()


async def test_in_step_jobs_share_one_grid() -> None:
    """With every phase 0 (the benchmark's "in step"), all jobs are due at the same times."""
    rec = Recorder()
    sched = ProbeScheduler(rec.probe, rec.results.append, phase=in_step)
    sched.start(jobs(["a", "b", "c"], "1h"))
    await wait_until(lambda: len(rec.results) == 3)
    due = {job.next_run_time for job in sched._scheduler.get_jobs()}
    assert len(due) == 1
    await sched.shutdown()


async def test_interval_change_moves_a_job_to_its_new_grid() -> None:
    """A reload that changes a job's interval reschedules it on the new interval's grid."""
    rec = Recorder()
    sched = ProbeScheduler(rec.probe, rec.results.append, phase=lambda _: 0.05)
    sched.start(jobs(["a"], "1h"))
    await wait_until(lambda: len(rec.results) == 1)
    sched.replace_jobs(jobs(["a"], "2h"))
    epoch = sched._epoch
    assert epoch is not None
    next_run = sched._scheduler.get_job("sim/a/p").next_run_time
    assert next_run == epoch + timedelta(minutes=6)  # the 2 h grid: epoch + 6 min + k * 2 h
    await sched.shutdown()
    assert rec.calls == Counter({"a": 1})


async def test_each_run_reports_its_start_delay() -> None:
    """Every run that starts reports how late it started: once per run, never negative."""
    delays: list[float] = []
    rec = Recorder()
    sched = ProbeScheduler(rec.probe, rec.results.append, on_start_delay=delays.append)
    sched.start(jobs(["a", "b"], "100ms"))
    await wait_until(lambda: len(rec.results) >= 6)
    await sched.shutdown()
    assert len(delays) == sum(rec.calls.values())
    assert all(delay >= 0.0 for delay in delays)
