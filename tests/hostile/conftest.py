"""Every hostile test also proves that nothing the server did reached the log as a crash."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if anything logged an error or a traceback (a task's unretrieved
    exception and a leaked coroutine are logged by asyncio when collected, hence the
    collection before looking)."""
    caplog.set_level(logging.INFO)
    yield
    gc.collect()
    bad = [
        r
        for r in caplog.records
        if r.exc_info is not None or r.levelno >= logging.ERROR or "Traceback" in r.getMessage()
    ]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]
