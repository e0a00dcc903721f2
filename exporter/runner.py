"""Probes in context: one HTTP client and one concurrency limit per target.

``concurrency`` (per target, default 1) keeps the exporter from queueing behind itself on a
busy Ollama. The slot is taken *before* ``t0``, so time spent waiting for our own slot is not
in TTFT. Every probe also runs under a safety deadline a little past its ``timeout``, so even
a bug in the prober cannot wedge a job (APScheduler has no job timeout; with
``max_instances=1`` a hung run would block its job forever).

On reload, targets whose settings did not change keep their client; a client whose target
changed or left the config is closed once its last in-flight probe has finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exporter.clock import Clock
from exporter.config import JobSpec, Target
from exporter.ollama.client import OllamaClient, TransportFailure
from exporter.probe import run_probe
from exporter.result import ProbeResult, Reason

log = logging.getLogger(__name__)

SAFETY_MARGIN_S = 5.0

ClientFactory = Callable[[Target, Clock], OllamaClient]


@dataclass(eq=False)
class _TargetSlot:
    target: Target
    client: OllamaClient
    limit: asyncio.Semaphore
    in_flight: int = 0
    retired: bool = False


class ProbeRunner:
    """Runs one probe for a job with its target's client and concurrency limit."""

    def __init__(self, clock: Clock, client_factory: ClientFactory | None = None) -> None:
        self._clock = clock
        self._factory = client_factory or (lambda target, clock: OllamaClient(target, clock=clock))
        self._slots: dict[str, _TargetSlot] = {}
        self._closers: set[asyncio.Task[None]] = set()

    def configure(self, targets: Sequence[Target]) -> None:
        """Adopt a new target list, reusing the clients of unchanged targets."""
        old = self._slots
        self._slots = {}
        for target in targets:
            slot = old.pop(target.name, None)
            if slot is None or slot.target != target:
                if slot is not None:
                    self._retire(slot)
                slot = _TargetSlot(
                    target,
                    self._factory(target, self._clock),
                    asyncio.Semaphore(target.concurrency),
                )
            self._slots[target.name] = slot
        for slot in old.values():
            self._retire(slot)

    def _retire(self, slot: _TargetSlot) -> None:
        slot.retired = True
        if slot.in_flight == 0:
            task = asyncio.get_running_loop().create_task(slot.client.aclose())
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
                await slot.client.aclose()

    async def _guarded(self, client: OllamaClient, spec: JobSpec) -> ProbeResult:
        t0 = self._clock.monotonic_ns()
        try:
            async with asyncio.timeout(spec.profile.timeout + SAFETY_MARGIN_S):
                return await run_probe(client, spec, self._clock)
        except TimeoutError:
            return ProbeResult(
                job=spec.key,
                finished_at=self._clock.time(),
                reason=Reason.TIMEOUT_TOTAL,
                detail="probe overran its deadline and was abandoned",
                elapsed_ns=self._clock.monotonic_ns() - t0,
            )

    async def warm_up(self) -> None:
        """One cheap ``/api/version`` per target before the first probe, concurrently.

        The first request through a fresh client pays for imports and setup (tens of ms);
        paying it here keeps it out of the first probe's TTFT. It also logs what each target
        runs, or that it is unreachable, at start-up.
        """

        async def one(slot: _TargetSlot) -> None:
            fields = {"target": slot.target.name, "url": slot.target.url}
            try:
                info = await slot.client.version()
            except TransportFailure as err:
                log.warning(
                    "target not reachable at start-up",
                    extra={"fields": {**fields, "reason": err.reason.value, "detail": err.detail}},
                )
            except Exception as err:
                log.warning(
                    "target not reachable at start-up",
                    extra={"fields": {**fields, "detail": repr(err)}},
                )
            else:
                log.info(
                    "target reachable",
                    extra={"fields": {**fields, "ollama_version": info.version}},
                )

        await asyncio.gather(*(one(slot) for slot in self._slots.values()))

    async def aclose(self) -> None:
        for slot in self._slots.values():
            await slot.client.aclose()
        self._slots = {}
        if self._closers:
            await asyncio.wait(self._closers, timeout=5)
