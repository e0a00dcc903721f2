"""When probes run: one APScheduler interval job per (target, model, probe).

Rules, and how they are kept:
- the first probe of every job runs at start-up (``next_run_time`` = now), then every
  ``interval``;
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
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

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


class ProbeScheduler:
    """Runs ``probe(spec)`` for every job on its interval and passes results to ``sink``."""

    def __init__(self, probe: ProbeFn, sink: ResultSink) -> None:
        self._probe = probe
        self._sink = sink
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_listener(self._on_skip, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        for name in _APSCHEDULER_LOGGERS:
            logging.getLogger(name).addFilter(_DROP_WARNINGS)  # once: filters are a set
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._scheduler.running and not self._stopping

    def start(self, jobs: Sequence[JobSpec]) -> None:
        """Schedule ``jobs`` (first runs now) and start; call from inside the running loop."""
        self.replace_jobs(jobs)
        self._scheduler.start()

    def replace_jobs(self, jobs: Sequence[JobSpec]) -> None:
        """Swap the job set without disturbing jobs that stay.

        A job that stays keeps its place in time (a reload does not trigger a burst of
        probes), and since APScheduler counts running instances by job id, it still cannot
        overlap a run that started before the reload. New jobs run at once.
        """
        wanted = {str(spec.key): spec for spec in jobs}
        for job in self._scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
        now = datetime.now(UTC)
        for job_id, spec in wanted.items():
            interval = spec.profile.interval
            trigger = IntervalTrigger(seconds=interval, timezone=UTC)
            existing = self._scheduler.get_job(job_id)
            # A loop stall must not silently drop a run; one interval late is still useful.
            grace = max(1, int(interval))
            if existing is not None:
                old_spec: JobSpec = existing.args[0]
                existing.modify(args=(spec,), misfire_grace_time=grace)
                if old_spec.profile.interval != interval:
                    existing.reschedule(trigger)
                continue
            self._scheduler.add_job(
                self._run,
                trigger,
                args=(spec,),
                id=job_id,
                name=job_id,
                next_run_time=now,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=grace,
            )

    async def _run(self, spec: JobSpec) -> None:
        task = asyncio.current_task()
        if task is None or self._stopping:
            return
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
