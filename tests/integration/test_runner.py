"""Per-target concurrency and the safety deadline, against the simulator."""

from __future__ import annotations

import asyncio

from exporter.clock import SystemClock
from exporter.runner import ProbeRunner
from exporter.simulator import ModelScript, OllamaSimulator
from tests.support.jobs import make_settings


async def test_one_probe_at_a_time_per_target(sim: OllamaSimulator) -> None:
    """With concurrency 1, two jobs on one target reach the server one after the other,
    and the wait for the slot is not counted in the second probe's TTFT."""
    script = ModelScript(first_token_delay=0.3, tokens_per_second=100.0, tokens=5)
    sim.set_script("a", script)
    sim.set_script("b", script)
    settings = make_settings(sim.url, ["a", "b"], max_tokens=5)
    runner = ProbeRunner(SystemClock())
    runner.configure(settings.targets)
    try:
        results = await asyncio.gather(*(runner.run(job) for job in settings.jobs()))
    finally:
        await runner.aclose()
    assert all(r.success for r in results)
    first, second = sorted(
        (r for r in sim.requests if r.path == "/api/generate"), key=lambda r: r.received_ns
    )
    assert first.done_write_ns is not None
    assert second.received_ns >= first.done_write_ns
    # The second probe waited ~0.34 s for the slot. Its clock (t0, from which TTFT counts)
    # started only once the first probe had ended, so the wait is not in its TTFT.
    earlier, later = sorted(results, key=lambda r: r.finished_at)
    assert earlier.t0_ns is not None
    assert later.t0_ns is not None
    assert later.t0_ns >= earlier.t0_ns + earlier.elapsed_ns


async def test_concurrency_two_overlaps(sim: OllamaSimulator) -> None:
    """With concurrency 2, the same two jobs are in flight together."""
    script = ModelScript(first_token_delay=0.3, tokens_per_second=100.0, tokens=5)
    sim.set_script("a", script)
    sim.set_script("b", script)
    settings = make_settings(sim.url, ["a", "b"], target={"concurrency": 2}, max_tokens=5)
    runner = ProbeRunner(SystemClock())
    runner.configure(settings.targets)
    try:
        await asyncio.gather(*(runner.run(job) for job in settings.jobs()))
    finally:
        await runner.aclose()
    first, second = sorted(
        (r for r in sim.requests if r.path == "/api/generate"), key=lambda r: r.received_ns
    )
    assert first.done_write_ns is not None
    assert second.received_ns < first.done_write_ns
