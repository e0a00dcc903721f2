"""Fixtures for probes against the in-process simulator over real loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from exporter.simulator import OllamaSimulator


@pytest.fixture
async def sim() -> AsyncIterator[OllamaSimulator]:
    async with OllamaSimulator() as simulator:
        yield simulator
