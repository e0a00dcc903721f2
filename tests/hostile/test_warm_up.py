"""The start-up ``/api/version`` round: bounded as a whole, and honest about simulators."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import pytest

from exporter import runner as runner_module
from exporter.clock import SystemClock
from exporter.runner import ProbeRunner
from tests.hostile.probing import MIB, peak_memory, settings_for
from tests.hostile.server import (
    HostileServer,
    Request,
    canned,
    chunk,
    fixed,
    head,
    healthy,
)

DRIP_INTERVAL_S = 0.05
WARM_UP_S = 0.5


async def drip(request: Request, writer: asyncio.StreamWriter) -> None:
    """A status line and headers that never end, one byte at a time, for minutes."""
    for _ in range(10_000):
        writer.write(b"X")
        await writer.drain()
        await asyncio.sleep(DRIP_INTERVAL_S)


async def warm_up(urls: dict[str, str], timeout: float = WARM_UP_S) -> None:
    runner = ProbeRunner(SystemClock())
    runner.configure(settings_for(urls, timeout="5s", stall_timeout="1s").targets)
    try:
        await asyncio.wait_for(runner.warm_up(timeout), 30)
    finally:
        await runner.aclose()


def records(caplog: pytest.LogCaptureFixture, target: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "exporter.runner" and getattr(r, "fields", {}).get("target") == target
    ]


def test_the_deadline_is_a_few_seconds() -> None:
    """Long enough for a slow network, short enough that start-up is barely delayed."""
    assert 1 <= runner_module.WARM_UP_TIMEOUT_S <= 10


async def test_dripping_server_cannot_hold_start_up(caplog: pytest.LogCaptureFixture) -> None:
    """A server that drips its headers a byte at a time (each read well within any
    per-read timeout) is given up at the warm-up's overall deadline, and a healthy target
    warmed at the same time is not kept waiting for it."""
    with HostileServer(drip) as slow, HostileServer(healthy) as good:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await warm_up({"slow": slow.url, "good": good.url})
        took = loop.time() - started
        await slow.wait_released()
    # Thousands of drips were left to send: only the deadline can have ended the wait.
    assert took < 10_000 * DRIP_INTERVAL_S / 10
    [slow_record] = records(caplog, "slow")
    [good_record] = records(caplog, "good")
    assert slow_record.levelno == logging.WARNING
    assert "did not answer" in slow_record.getMessage()
    assert good_record.getMessage() == "target reachable"
    assert good_record.created <= slow_record.created


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b'{"version":"0.0.0-simulator"}', []),
        (b'{"version":"0.15.6"}', [("Server", "ollama-probe-exporter-simulator/0.1.0")]),
    ],
)
async def test_simulator_is_named_as_such(
    caplog: pytest.LogCaptureFixture, body: bytes, headers: Iterable[tuple[str, str]]
) -> None:
    """A target that is the exporter's own simulator gets a warning: its numbers are
    synthetic, and an operator pointing the exporter at it by mistake should know."""
    with HostileServer(canned(fixed(200, body, headers))) as server:
        await warm_up({"sim": server.url})
        await server.wait_released()
    warnings = [r for r in records(caplog, "sim") if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "simulator, not Ollama" in warnings[0].getMessage()


async def test_real_ollama_gets_no_simulator_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Ollama's own answer is logged once, at info, with its version."""
    with HostileServer(healthy) as server:
        await warm_up({"ollama": server.url})
        await server.wait_released()
    [record] = records(caplog, "ollama")
    assert record.levelno == logging.INFO
    assert record.fields["ollama_version"] == "0.15.6"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "response",
    [
        head(200, [("Content-Encoding", "gzip")]) + chunk(b"\x1f\x8b" + b"\0" * 10_000),
        fixed(200, b'{"version":'),
        fixed(200, b"x" * (10 * MIB)),
        fixed(500, b'{"error":"' + b"e" * (10 * MIB) + b'"}'),
    ],
    ids=["gzip", "not-json", "huge-body", "huge-error"],
)
async def test_bad_version_answers_are_a_warning(
    caplog: pytest.LogCaptureFixture, response: bytes
) -> None:
    """A compressed, malformed or huge answer is one short warning; little of it is read."""
    with HostileServer(canned(response)) as server, peak_memory() as peak:
        await warm_up({"bad": server.url})
        await server.wait_released()
    [record] = records(caplog, "bad")
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "target not reachable at start-up"
    assert len(str(record.fields).encode()) < 1024  # type: ignore[attr-defined]
    assert peak.bytes < 4 * MIB, peak.bytes
