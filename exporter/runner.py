"""Probes in context: one HTTP client and one concurrency limit per target.

``concurrency`` (per target, default 1) keeps the exporter from queueing behind itself on a
busy Ollama. The slot is taken *before* ``t0``, so time spent waiting for our own slot is not
in TTFT. A run takes one slot, whatever its ``parallel``: its streams are one measurement.
Every run also runs under a safety deadline a little past its ``timeout``, so even
a bug in the prober cannot wedge a job (APScheduler has no job timeout; with
``max_instances=1`` a hung run would block its job forever).

A new target list is adopted in two steps, so that a reload is all or nothing: ``prepare``
builds the clients of new and changed targets without touching the current ones (a CA file
that is not a valid bundle only fails here, although the config accepted its path), and
``adopt`` swaps them in. If any client cannot be built, ``prepare`` closes those it built and
raises ``TargetSetupError``; the running targets never saw a thing. Targets whose settings
did not change keep their client; a client whose target changed or left the config is closed
once its last in-flight probe has finished. Closing never raises and never waits without a
bound: a client that cannot close in time is left to the garbage collector rather than
holding up a reload or a shutdown.

A server may echo what it was sent (an error body quoting the request's headers, a proxy's
diagnostic page), and that text reaches logs, the landing page and ``probe`` output as a
failure's detail. The prober and the ``/api/ps`` question scrub their details of the
target's header values (``redact``) where they make them; this module scrubs its own log
lines the same way.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exporter.clock import Clock
from exporter.config import JobSpec, Target
from exporter.ollama.client import OllamaClient, TransportFailure
from exporter.result import ProbeResult, Reason, redact, shorten
from exporter.workload import inventory_timeout, run_job

log = logging.getLogger(__name__)

SAFETY_MARGIN_S = 5.0
# The start-up warm-up as a whole: a target that has not answered by then is logged and
# left alone, so that neither a slow nor a dripping server can hold back the first probes
# (or a SIGTERM that arrives meanwhile).
WARM_UP_TIMEOUT_S = 3.0
CLOSE_TIMEOUT_S = 5.0
SIMULATOR_WARNING = (
    "target is the ollama-probe-exporter simulator, not Ollama: its numbers are synthetic"
)
_SSL_SOURCE = re.compile(r"\s*\(_ssl\.c:\d+\)$")


class TargetSetupError(Exception):
    """A target's client could not be built: one line naming the config key, like a config
    error (``targets[1].tls.ca_file: …``)."""


@dataclass(eq=False)
class _TargetSlot:
    target: Target
    client: OllamaClient
    limit: asyncio.Semaphore
    in_flight: int = 0
    retired: bool = False


@dataclass(frozen=True, eq=False)
class TargetPlan:
    """A target list ready to adopt: a slot per target, the new ones already built."""

    slots: Mapping[str, _TargetSlot]


def _setup_error(index: int, target: Target, err: Exception) -> TargetSetupError:
    """The one line for a client that could not be built, scrubbed of header values."""
    secrets = list(target.header_values().values())
    reason = redact(_SSL_SOURCE.sub("", str(err)) or type(err).__name__, secrets)
    ca_file = target.tls.ca_file
    if isinstance(err, ssl.SSLError | OSError) and ca_file is not None:
        return TargetSetupError(
            f"targets[{index}].tls.ca_file: {ca_file}: not a usable CA bundle: {reason}"
        )
    return TargetSetupError(
        f"targets[{index}] ({target.name}): cannot set up its HTTP client: {reason}"
    )


async def _close_quietly(client: OllamaClient) -> None:
    """Close ``client``; a failure to close is a log line, never an exception in a task."""
    try:
        await client.aclose()
    except Exception as err:
        log.warning(
            "closing a target's client failed",
            extra={"fields": {"target": client.target.name, "detail": shorten(repr(err))}},
        )


class ProbeRunner:
    """Runs one probe for a job with its target's client and concurrency limit."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._slots: dict[str, _TargetSlot] = {}
        self._closers: set[asyncio.Task[None]] = set()

    def configure(self, targets: Sequence[Target]) -> None:
        """Adopt a new target list, reusing the clients of unchanged targets.

        ``TargetSetupError`` if a client cannot be built; nothing changed then.
        """
        self.adopt(self.prepare(targets))

    def prepare(self, targets: Sequence[Target]) -> TargetPlan:
        """Build what ``targets`` need beyond the current clients; change nothing current.

        Call on the event loop. On failure the clients built so far are closed (in the
        background, awaited by ``aclose``) and ``TargetSetupError`` names the target's key.
        """
        slots: dict[str, _TargetSlot] = {}
        built: list[_TargetSlot] = []
        for index, target in enumerate(targets):
            slot = self._slots.get(target.name)
            if slot is None or slot.target != target:
                try:
                    client = OllamaClient(target, clock=self._clock)
                except Exception as err:
                    for done in built:
                        self._close_later(done.client)
                    raise _setup_error(index, target, err) from None
                slot = _TargetSlot(target, client, asyncio.Semaphore(target.concurrency))
                built.append(slot)
            slots[target.name] = slot
        return TargetPlan(slots)

    def adopt(self, plan: TargetPlan) -> None:
        """Make ``plan`` current; retire the clients it does not keep. Never fails."""
        kept = {id(slot) for slot in plan.slots.values()}
        for slot in self._slots.values():
            if id(slot) not in kept:
                self._retire(slot)
        self._slots = dict(plan.slots)

    def _retire(self, slot: _TargetSlot) -> None:
        slot.retired = True
        if slot.in_flight == 0:
            self._close_later(slot.client)

    def _close_later(self, client: OllamaClient) -> None:
        task = asyncio.get_running_loop().create_task(_close_quietly(client))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def run(self, spec: JobSpec) -> ProbeResult:
        """Wait for a slot on the job's target, then probe under the safety deadline."""
        slot = self._slots[spec.target.name]
        slot.in_flight += 1
        try:
            async with slot.limit:
                return await self._guarded(slot.client, spec)
        finally:
            slot.in_flight -= 1
            if slot.retired and slot.in_flight == 0:
                self._close_later(slot.client)

    async def _guarded(self, client: OllamaClient, spec: JobSpec) -> ProbeResult:
        """One run (``exporter.workload``): its ``/api/ps`` question, then its streams, which
        all run at once, so the deadline is the probe's own plus that question's."""
        t0 = self._clock.monotonic_ns()
        deadline = spec.profile.timeout + inventory_timeout(spec) + SAFETY_MARGIN_S
        try:
            async with asyncio.timeout(deadline):
                return await run_job(client, spec, self._clock)
        except TimeoutError:
            return ProbeResult(
                job=spec.key,
                finished_at=self._clock.time(),
                reason=Reason.TIMEOUT_TOTAL,
                detail="probe overran its deadline and was abandoned",
                elapsed_ns=self._clock.monotonic_ns() - t0,
            )

    async def warm_up(self, timeout: float | None = None) -> None:
        """One cheap ``/api/version`` per target before the first probe, concurrently, all of
        it within ``timeout`` (``WARM_UP_TIMEOUT_S``).

        The first request through a fresh client pays for imports and setup (tens of ms);
        paying it here keeps it out of the first probe's TTFT. It also logs what each target
        runs, that it is the exporter's own simulator rather than Ollama, or that it is
        unreachable. It never raises; cancelled (a stop during start-up), it stops at once.
        """
        limit = WARM_UP_TIMEOUT_S if timeout is None else timeout

        async def one(slot: _TargetSlot) -> None:
            fields = {"target": slot.target.name, "url": slot.target.url}
            secrets = list(slot.target.header_values().values())
            try:
                info = await slot.client.version(timeout=limit)
            except TimeoutError:
                log.warning(
                    "target did not answer /api/version at start-up",
                    extra={"fields": {**fields, "waited_s": limit}},
                )
            except TransportFailure as err:
                log.warning(
                    "target not reachable at start-up",
                    extra={"fields": {**fields, "reason": err.reason.value,
                                      "detail": shorten(redact(err.detail, secrets))}},
                )  # fmt: skip
            except Exception as err:  # start-up must go on whatever a target does
                log.warning(
                    "target not reachable at start-up",
                    extra={"fields": {**fields, "detail": shorten(redact(repr(err), secrets))}},
                )
            else:
                version = {"ollama_version": info.version}
                if info.server:
                    version["server"] = info.server
                log.info("target reachable", extra={"fields": {**fields, **version}})
                if info.is_simulator:
                    log.warning(SIMULATOR_WARNING, extra={"fields": {**fields, **version}})

        await asyncio.gather(*(one(slot) for slot in self._slots.values()))

    async def aclose(self) -> None:
        """Close every client, those of retired targets included, within ``CLOSE_TIMEOUT_S``."""
        for slot in self._slots.values():
            self._close_later(slot.client)
        self._slots = {}
        closers = set(self._closers)
        if not closers:
            return
        _, pending = await asyncio.wait(closers, timeout=CLOSE_TIMEOUT_S)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("clients still closing after %g s: abandoned", CLOSE_TIMEOUT_S)
            await asyncio.wait(pending, timeout=CLOSE_TIMEOUT_S)
