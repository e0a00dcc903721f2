"""The runner's safety deadline (a prober that never returns cannot wedge its job) and its
close path (closing never raises)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from exporter import runner as runner_module
from exporter.config import JobSpec
from exporter.ollama.client import OllamaClient
from exporter.result import Reason
from exporter.runner import ProbeRunner
from tests.fakes import FakeClock
from tests.support.jobs import make_job


async def test_wedged_probe_is_abandoned(monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe stuck past timeout + margin ends as timeout_total and frees the target's slot."""
    calls = 0

    async def wedged(client: object, spec: JobSpec, clock: object) -> None:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()  # a bug that ignores every deadline but cancellation

    monkeypatch.setattr(runner_module, "run_job", wedged)
    monkeypatch.setattr(runner_module, "SAFETY_MARGIN_S", 0.1)
    job = make_job("http://127.0.0.1:9", "m", timeout="100ms", stall_timeout="100ms")
    runner = ProbeRunner(FakeClock())
    runner.configure([job.target])
    try:
        first = await asyncio.wait_for(runner.run(job), timeout=5)
        second = await asyncio.wait_for(runner.run(job), timeout=5)  # the slot was released
    finally:
        await runner.aclose()
    assert first.reason is Reason.TIMEOUT_TOTAL
    assert "abandoned" in first.detail
    assert second.reason is Reason.TIMEOUT_TOTAL
    assert calls == 2


async def test_closing_never_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that fails to close is one warning; the other clients are still closed, and
    no task is left with an exception nobody retrieves."""
    closed: list[str] = []

    async def aclose(self: OllamaClient) -> None:
        if self.target.name == "bad":
            raise RuntimeError("cannot close")
        closed.append(self.target.name)

    monkeypatch.setattr(OllamaClient, "aclose", aclose)
    targets = [
        make_job(f"http://127.0.0.1:{port}", "m").target.model_copy(update={"name": name})
        for port, name in [(9, "bad"), (10, "good"), (11, "retired")]
    ]
    runner = ProbeRunner(FakeClock())
    runner.configure(targets)
    runner.configure(targets[:2])  # "retired" leaves: closed in the background
    await runner.aclose()
    assert sorted(closed) == ["good", "retired"]
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.getMessage() == "closing a target's client failed"
