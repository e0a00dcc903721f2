"""When probes run: one APScheduler interval job per (target, model, probe).

Rules, and how they are kept:
- jobs do not run in step: each has a phase, a stable hash of its key (``phase_fraction``)
  times its interval, and runs on the grid ``start-up + phase + k * interval``, as
  Prometheus offsets the scrapes of its targets. Started together, a thousand jobs would
  put a thousand streams on the wire in the same millisecond, and a burst of arrivals
  delays the stamps of all of them (the event loop works through one after another), while
  every server would see all of its probes at once;
- the first probe of every job still runs at start-up, spread by the same hash over the
  first second (or over the interval, if shorter), so never later than its phase; the next
  run is the first grid point at least an interval after it. A job a reload adds runs the
  same way from the reload on;
- a job never overlaps itself: ``max_instances=1`` skips a run while the previous one is in
  flight, and ``coalesce`` folds missed runs into one. Each skipped or missed run is logged
  once, by us, with the job's name; APScheduler's own warnings for them are dropped;
- no exception ever reaches APScheduler, which would log it as a job error with a traceback
  (``CancelledError`` included); every run ends in a ProbeResult handed to ``sink``, or in a
  logged bug;
- shutdown cancels in-flight probes once and awaits them. APScheduler's own
  ``shutdown(wait=True)`` does not wait for asyncio jobs and cancels them behind our back; a
  second cancel can interrupt a probe's cleanup and leak its connection, so APScheduler is
  shut down only once our probes have unwound (or the grace period is over).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from exporter.config import JobSpec
from exporter.result import ProbeResult

log = logging.getLogger(__name__)

# APScheduler's loggers. At WARNING they say only what ``_on_skip`` says better (a run
# skipped or missed; a job store failure cannot happen with the memory store).
_APSCHEDULER_LOGGERS = ("apscheduler.scheduler", "apscheduler.executors.default")


class _DropWarnings(logging.Filter):
    """Drops WARNING records: the skipped and missed runs we log ourselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != logging.WARNING


_DROP_WARNINGS = _DropWarnings()

ProbeFn = Callable[[JobSpec], Awaitable[ProbeResult]]
ResultSink = Callable[[ProbeResult], None]
PhaseFn = Callable[[str], float]

# The first runs after start-up (or a reload) are spread over this long, at most.
STARTUP_SPREAD_S = 1.0


def phase_fraction(job_id: str) -> float:
    """Where in its interval a job runs, in [0, 1): a hash of its key, the same on every
    start and on every host, so a job keeps its phase and jobs land evenly."""
    digest = hashlib.blake2b(job_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class PhaseTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler ships no types
    """Fires on the grid ``anchor + k * interval``: after a run, at the first grid point at
    least an interval later; with no run yet, at the first one from now on."""

    __slots__ = ("anchor", "interval")

    def __init__(self, interval: timedelta, anchor: datetime) -> None:
        self.interval = interval
        self.anchor = anchor

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        earliest = now if previous_fire_time is None else previous_fire_time + self.interval
        # Whole intervals from the anchor, rounded up; timedelta division is exact.
        steps = -((self.anchor - earliest) // self.interval)
        return self.anchor + steps * self.interval

    def __str__(self) -> str:
        return f"every {self.interval} from {self.anchor.isoformat()}"


class ProbeScheduler:
    """Runs ``probe(spec)`` for every job on its interval and passes results to ``sink``.

    ``phase`` places a job in its interval (``phase_fraction``; the benchmark puts every job
    at 0 to show what running in step costs). ``on_start_delay`` receives, for each run, how
    many seconds after its scheduled time it began (before any wait for its target's
    concurrency slot): the scheduler's own lateness, which a busy event loop drives up.
    """

    def __init__(
        self,
        probe: ProbeFn,
        sink: ResultSink,
        *,
        phase: PhaseFn = phase_fraction,
        on_start_delay: Callable[[float], None] | None = None,
    ) -> None:
        self._probe = probe
        self._sink = sink
        self._phase = phase
        self._on_start_delay = on_start_delay
        self._tasks: set[asyncio.Task[None]] = set()
        self._epoch: datetime | None = None
        # Job id → the monotonic time its submitted run was due.
        self._due: dict[str, float] = {}
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_listener(self._on_skip, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._scheduler.add_listener(self._on_submit, EVENT_JOB_SUBMITTED)
        for name in _APSCHEDULER_LOGGERS:
            logging.getLogger(name).addFilter(_DROP_WARNINGS)  # once: filters are a set
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._scheduler.running and not self._stopping

    def start(self, jobs: Sequence[JobSpec]) -> None:
        """Schedule ``jobs`` (first runs within a second) and start; call from inside the
        running loop."""
        self.replace_jobs(jobs)
        self._scheduler.start()

    def replace_jobs(self, jobs: Sequence[JobSpec]) -> None:
        """Swap the job set without disturbing jobs that stay.

        A job that stays keeps its place in time (a reload does not trigger a burst of
        probes), and since APScheduler counts running instances by job id, it still cannot
        overlap a run that started before the reload. New jobs run within a second, spread
        by their phase; a job whose interval changed moves to its new grid.
        """
        wanted = {str(spec.key): spec for spec in jobs}
        for job in self._scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
                self._due.pop(job.id, None)
        now = datetime.now(UTC)
        if self._epoch is None:
            self._epoch = now
        for job_id, spec in wanted.items():
            interval = spec.profile.interval
            fraction = self._phase(job_id)
            trigger = PhaseTrigger(
                timedelta(seconds=interval), self._epoch + timedelta(seconds=fraction * interval)
            )
            existing = self._scheduler.get_job(job_id)
            # A loop stall must not silently drop a run; one interval late is still useful.
            grace = max(1, int(interval))
            if existing is not None:
                old_spec: JobSpec = existing.args[0]
                existing.modify(args=(spec,), misfire_grace_time=grace)
                if old_spec.profile.interval != interval:
                    existing.reschedule(trigger)
                continue
            first = now + timedelta(seconds=fraction * min(interval, STARTUP_SPREAD_S))
            self._scheduler.add_job(
                self._run,
                trigger,
                args=(spec,),
                id=job_id,
                name=job_id,
                next_run_time=first,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=grace,
            )

    def _on_submit(self, event: JobSubmissionEvent) -> None:
        """A run was handed to the loop (it starts on a later pass): note when it was due.

        APScheduler's times are wall-clock; only the lateness so far is taken from them,
        the rest is measured on the monotonic clock, so a clock step spoils one sample at
        most.
        """
        late = (datetime.now(UTC) - event.scheduled_run_times[-1]).total_seconds()
        self._due[event.job_id] = time.monotonic() - max(0.0, late)

    async def _run(self, spec: JobSpec) -> None:
        due = self._due.pop(str(spec.key), None)
        task = asyncio.current_task()
        if task is None or self._stopping:
            return
        if due is not None and self._on_start_delay is not None:
            self._on_start_delay(max(0.0, time.monotonic() - due))
        self._tasks.add(task)
        try:
            self._sink(await self._probe(spec))
        except asyncio.CancelledError:
            # Shutdown: an aborted probe is neither a success nor an error. Not re-raised:
            # APScheduler would log the cancellation as a job error, traceback and all.
            log.debug("probe cancelled", extra={"fields": {"job": str(spec.key)}})
        except Exception:
            log.exception(
                "probe crashed (a bug: please report it)", extra={"fields": {"job": str(spec.key)}}
            )
        finally:
            self._tasks.discard(task)

    def _on_skip(self, event: JobExecutionEvent) -> None:
        why = (
            "the previous run is still in flight"
            if event.code == EVENT_JOB_MAX_INSTANCES
            else "its start time passed more than an interval ago"
        )
        log.warning("probe run skipped: %s", why, extra={"fields": {"job": event.job_id}})

    async def shutdown(self, grace_s: float = 5.0) -> None:
        """Stop scheduling, cancel in-flight probes once, and wait for them to unwind.

        A run APScheduler created just before ``pause`` has not started yet; one pass of the
        loop lets it start, see ``_stopping`` and return, so that APScheduler never cancels a
        run that has not started (it would log that as a job error, with a traceback).
        """
        self._stopping = True
        if self._scheduler.running:
            self._scheduler.pause()
        await asyncio.sleep(0)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            if pending:
                log.warning(
                    "%d probes still unwinding %g s after being cancelled", len(pending), grace_s
                )
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
