"""The long-running exporter: settings → scheduler → probe → recorder → HTTP, wired once.

Owns the lifecycle around those rooms: start-up (web server, warm-up, first probes), config
reload, the latest result per job for the landing page, one log line per failed probe, and a
graceful stop.

A reload is all or nothing. The new config is validated, then everything it needs that can
fail is built (the clients of new and changed targets: a CA file can be a valid path and
still not a CA bundle), and only then is anything swapped. A refused reload leaves the old
config, jobs, clients and series exactly as they were, closes what it had built, and says
why in one line. The same failure at start-up ends the process with that line and exit
status 1, as an invalid config does.

A stop can arrive at any time, also while the start-up warm-up waits on a target that
never answers: it is raced against the warm-up, so the process exits at once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from exporter import __version__
from exporter.clock import Clock, SystemClock
from exporter.config import ConfigError, JobSpec, Settings, load_settings
from exporter.looplag import LoopLagMonitor
from exporter.recorder import ExporterMetrics, Recorder, new_registry
from exporter.report import log_fields
from exporter.result import JobKey, ProbeResult
from exporter.runner import ProbeRunner, TargetSetupError
from exporter.scheduler import ProbeScheduler
from exporter.web import WebHooks, WebServer, make_app

log = logging.getLogger(__name__)

RELOAD_WAIT_S = 30.0
EXIT_START_FAILED = 1


class StartupError(Exception):
    """The daemon cannot start with its config: one line for the operator, no traceback."""


class Daemon:
    """One exporter process. ``run()`` returns when ``stop()`` is called or a signal arrives."""

    def __init__(
        self,
        settings: Settings,
        *,
        listen: tuple[str, int],
        config_path: Path | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        on_ready: Callable[[str], None] | None = None,
        web_config_file: Path | None = None,
        enable_lifecycle: bool = False,
    ) -> None:
        self.settings = settings
        self._config_path = config_path
        self._environ = environ
        self._clock = clock or SystemClock()
        self._on_ready = on_ready
        self.registry = new_registry()
        self._self_metrics = ExporterMetrics(self.registry, __version__)
        self._recorder = Recorder(self.registry)
        self._runner = ProbeRunner(self._clock)
        self._scheduler = ProbeScheduler(
            self._runner.run, self._on_result, on_start_delay=self._self_metrics.start_delay.observe
        )
        self._loop_lag = LoopLagMonitor(self._self_metrics.loop_lag.observe)
        self._results: Mapping[JobKey, ProbeResult | None] = MappingProxyType({})
        self._stop = asyncio.Event()
        self._reloads: set[asyncio.Task[tuple[bool, str]]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        hooks = WebHooks(
            healthy=lambda: self._scheduler.running,
            reload=self._reload_from_thread,
            results=lambda: self._results,
            version=__version__,
            rendered=self._self_metrics.render_time.observe,
        )
        self._enable_lifecycle = enable_lifecycle
        app = make_app(self.registry, hooks, enable_lifecycle=enable_lifecycle)
        self.web = WebServer(listen[0], listen[1], app, web_config_file=web_config_file)

    @property
    def url(self) -> str:
        """A URL a client on this machine can use (a wildcard listen address becomes loopback)."""
        return self.web.local_url

    def _apply(self, settings: Settings) -> list[JobSpec]:
        """Make ``settings`` current everywhere but in the scheduler; return its jobs.

        Everything that can fail is built first (``TargetSetupError``, and nothing changed);
        from ``adopt`` on, nothing raises, so no reload is ever half-applied. No ``await``
        in between either: two reloads cannot interleave.
        """
        jobs = settings.jobs()
        plan = self._runner.prepare(settings.targets)
        self._runner.adopt(plan)
        self._recorder.sync_jobs(spec.key for spec in jobs)
        old = self._results
        self._results = MappingProxyType({s.key: old.get(s.key) for s in jobs})
        self.settings = settings
        self._self_metrics.config_loaded(True, self._clock.time())
        for warning in settings.warnings():
            log.warning("config: %s", warning)
        return jobs

    def _on_result(self, result: ProbeResult) -> None:
        if not self._recorder.record(result):
            return  # the job left the config while this probe was in flight
        self._results = MappingProxyType({**self._results, result.job: result})
        if result.reason is not None:
            log.warning("probe failed", extra={"fields": log_fields(result)})
            return
        if result.skipped is not None:  # deliberate (when: if_loaded), and every interval
            log.debug("probe skipped", extra={"fields": log_fields(result)})
            return
        log.debug("probe ok", extra={"fields": log_fields(result)})
        if result.tokens_from_chunks:
            log.debug(
                "server sent no eval_count: tokens counted from text chunks",
                extra={"fields": {"job": str(result.job), "text_chunks": result.text_chunks}},
            )

    async def reload(self) -> tuple[bool, str]:
        """Re-read the config; apply it only if it is valid."""
        try:
            settings = await asyncio.to_thread(load_settings, self._config_path, self._environ)
        except ConfigError as err:
            self._self_metrics.config_loaded(False, self._clock.time())
            for problem in err.problems:
                log.error("config reload refused: %s", problem)
            return False, "reload refused, previous config kept:\n" + str(err)
        try:
            jobs = self._apply(settings)
        except TargetSetupError as err:
            self._self_metrics.config_loaded(False, self._clock.time())
            log.error("config reload refused: %s", err)
            return False, f"reload refused, previous config kept:\n{err}"
        self._scheduler.replace_jobs(jobs)
        log.info("config reloaded", extra={"fields": {"jobs": len(jobs)}})
        return True, f"reloaded: {len(jobs)} jobs"

    def _reload_from_thread(self) -> tuple[bool, str]:
        """``POST /-/reload`` arrives on a web thread; the reload runs on the event loop."""
        if self._loop is None:
            return False, "not running"
        future = asyncio.run_coroutine_threadsafe(self.reload(), self._loop)
        return future.result(timeout=RELOAD_WAIT_S)

    def stop(self) -> None:
        self._stop.set()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)

    @staticmethod
    def _remove_signals(loop: asyncio.AbstractEventLoop) -> None:
        """Give the signals back: a loop that outlives ``run()`` must not call a dead daemon."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    def _reload_on_signal(self) -> None:
        # Keep a reference: the loop holds tasks only weakly.
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def run(self) -> None:
        """Serve until stopped; the command line's entry point.

        A start-up failure (``StartupError``) becomes its one line on stderr and exit status
        1, like an invalid config, instead of a traceback.
        """
        try:
            await self.serve()
        except StartupError as err:
            print(err, file=sys.stderr)
            raise SystemExit(EXIT_START_FAILED) from None

    async def serve(self) -> None:
        """Start, serve until ``stop()`` or a signal, shut down; ``StartupError`` if the
        config cannot be put to work (nothing is left running then)."""
        self._loop = asyncio.get_running_loop()
        try:
            self._apply(self.settings)
        except TargetSetupError as err:
            await self._runner.aclose()  # the clients built before the failure
            self.web.close()  # bound on construction: give the port back
            raise StartupError(str(err)) from None
        self._install_signals(self._loop)
        try:
            self.web.start()
            fields = {
                "address": self.web.url,
                "tls": self.web.tls,
                "basic_auth": self.web.basic_auth,
                "lifecycle": self._enable_lifecycle,
                "version": __version__,
            }
            log.info("listening", extra={"fields": fields})
            if not await self._warm_up_unless_stopped():
                return
            # Everything imported and allocated so far lives for good: freezing it shortens
            # the collector's pauses, which would otherwise land inside probe timings.
            gc.freeze()
            # The jobs of the config as it is now: a SIGHUP during the warm-up may have
            # replaced the one the process started with.
            self._loop_lag.start()
            self._scheduler.start(self.settings.jobs())
            if self._on_ready is not None:
                self._on_ready(self.url)
            await self._stop.wait()
        finally:
            log.info("shutting down")
            await self._scheduler.shutdown()
            self._loop_lag.stop()
            await self._runner.aclose()
            self.web.close()
            self._remove_signals(self._loop)

    async def _warm_up_unless_stopped(self) -> bool:
        """Warm up, unless a stop comes first (then cancel it); whether to go on.

        The warm-up is bounded, but by seconds: a SIGTERM during it must not wait for a
        target that never answers.
        """
        warm_up = asyncio.ensure_future(self._runner.warm_up())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({warm_up, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (warm_up, stopped):
                task.cancel()
            # wait(), not await: a cancelled warm-up is expected, a cancel of our own is not
            # to be swallowed.
            await asyncio.wait({warm_up, stopped})
        return not self._stop.is_set()
