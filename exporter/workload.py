"""One run of a job: what is asked before generating, and how many generations at once.

A run is what the scheduler triggers; the prober (``probe.py``) measures one generation.
Between them:

- **Inventory.** Runs of ``/api/*`` profiles (and every ``when: if_loaded`` run) first ask
  the target's ``/api/ps``, before the generation so that it shows the models as their
  users left them (a probe loads the model it probes). The answer, for the target's
  configured models, travels with the run's result to the recorder. ``/v1`` profiles
  leave it out: other OpenAI-compatible servers have no ``/api/ps``.
- **``when: if_loaded``.** A model that ``/api/ps`` does not list is not generated on at
  all: a probe would load it, evicting whatever another user needs, and keep it loaded. The
  run is *skipped*, neither a success nor a failure. If ``/api/ps`` cannot be read, nothing
  is sent either: the run fails with the reason ``/api/ps`` earned.
- **``parallel: N``.** N generations start at once, each on its own connection with its own
  nonce, each measured as a probe of its own. Their results travel together in one summary
  (``ProbeResult.streams``), because the scheduler hands one result per run to the recorder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from exporter.clock import Clock
from exporter.config import JobSpec
from exporter.ollama.client import OllamaClient, TransportFailure
from exporter.ollama.decoding import InvalidLine
from exporter.ollama.inventory import parse_running
from exporter.probe import run_probe
from exporter.result import Inventory, ProbeResult, Reason, SkipReason, redact

log = logging.getLogger(__name__)

# /api/ps answers from memory at once; a few seconds allow for a busy server.
PS_TIMEOUT_S = 5.0


def inventory_timeout(spec: JobSpec) -> float:
    """How long a run of ``spec`` may spend on ``/api/ps`` before generating (0: it does not
    ask)."""
    if spec.profile.api == "openai" and spec.profile.when != "if_loaded":
        return 0.0
    return min(PS_TIMEOUT_S, spec.profile.timeout)


async def take_inventory(
    client: OllamaClient, spec: JobSpec
) -> tuple[Inventory, tuple[Reason, str] | None]:
    """The target's configured models as ``/api/ps`` lists them, and why it could not be
    read (``models`` is then None), scrubbed of the target's header values. Never raises for
    what the server does."""
    target = spec.target
    failure: tuple[Reason, str]
    try:
        body = await client.running_models(timeout=inventory_timeout(spec))
        return parse_running(body, target.name, target.models), None
    except TimeoutError:
        waited = inventory_timeout(spec)
        failure = (Reason.TIMEOUT_FIRST_TOKEN, f"/api/ps: no answer within {waited:g} s")
    except TransportFailure as err:
        failure = (err.reason, f"/api/ps: {err.detail}")
    except InvalidLine as err:
        failure = (Reason.INVALID_RESPONSE, f"/api/ps: {err}")
    except Exception as err:  # whatever the server provokes is a reason, never a crash
        failure = (Reason.INVALID_RESPONSE, f"/api/ps: unexpected {type(err).__name__}: {err}")
    reason, detail = failure  # a server may quote the request's headers back
    return Inventory(target.name, None), (reason, redact(detail, target.header_values().values()))


async def run_job(client: OllamaClient, spec: JobSpec, clock: Clock) -> ProbeResult:
    """One run of ``spec``: inventory, the ``if_loaded`` check, then the generation(s)."""
    inventory = None
    if inventory_timeout(spec) > 0:
        started_ns = clock.monotonic_ns()
        inventory, failure = await take_inventory(client, spec)
        if failure is not None and spec.profile.when == "always":
            # Not the probe's business: it goes ahead, and the residency series go away.
            fields = {"job": str(spec.key), "reason": failure[0].value, "detail": failure[1]}
            log.debug("inventory unavailable", extra={"fields": fields})
        if spec.profile.when == "if_loaded":
            if failure is not None:
                return ProbeResult(
                    job=spec.key,
                    finished_at=clock.time(),
                    reason=failure[0],
                    detail=f"{failure[1]} (when: if_loaded sends nothing it cannot check)",
                    elapsed_ns=clock.monotonic_ns() - started_ns,
                    inventory=inventory,
                )
            residency = inventory.residency(spec.model)
            if residency is None or not residency.loaded:
                return ProbeResult(
                    job=spec.key,
                    finished_at=clock.time(),
                    reason=None,
                    skipped=SkipReason.NOT_LOADED,
                    detail="not loaded (/api/ps): nothing sent",
                    inventory=inventory,
                )
    result = await run_streams(client, spec, clock)
    return result if inventory is None else dataclasses.replace(result, inventory=inventory)


async def run_streams(client: OllamaClient, spec: JobSpec, clock: Clock) -> ProbeResult:
    """``parallel`` generations at once; one is the probe itself, more are summarised."""
    count = spec.profile.parallel
    if count == 1:
        return await run_probe(client, spec, clock)
    streams = await asyncio.gather(*(run_probe(client, spec, clock) for _ in range(count)))
    return summarize(spec, streams, clock.time())


def summarize(spec: JobSpec, streams: list[ProbeResult], finished_at: float) -> ProbeResult:
    """The result of a parallel run: its streams, its wall time, the first failure if any.

    The run failed if any stream failed, with the reason of the first failed stream (in
    start order); every stream is still recorded as the probe it was.
    """
    count = len(streams)
    starts = [s.t0_ns for s in streams if s.t0_ns is not None]
    ends = [s.t0_ns + s.elapsed_ns for s in streams if s.t0_ns is not None]
    failed = [s for s in streams if s.reason is not None]
    if failed:
        reason = failed[0].reason
        detail = f"{len(failed)} of {count} streams failed; first: {failed[0].detail}"
    else:
        reason = None
        detail = f"{count} streams; {streams[0].detail}"
    return ProbeResult(
        job=spec.key,
        finished_at=finished_at,
        reason=reason,
        detail=detail,
        elapsed_ns=max(ends) - min(starts) if starts else 0,
        output_tokens=sum(s.output_tokens for s in streams if s.success),
        text_chunks=sum(s.text_chunks for s in streams),
        t0_ns=min(starts) if starts else None,
        streams=tuple(streams),
    )
