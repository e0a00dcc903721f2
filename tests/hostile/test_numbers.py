"""Absurd numbers in the done chunk are an invalid response, never a poisoned counter."""

from __future__ import annotations

import pytest

from exporter.recorder import Recorder, new_registry
from exporter.result import Reason
from tests.hostile.probing import probe_hostile
from tests.hostile.server import HostileServer, canned, done_line, stream, text_line

LABELS = {"target": "sim", "model": "m", "probe": "p"}


def done_with(field: str, raw: str) -> bytes:
    """A done line whose ``field`` is the literal JSON text ``raw``."""
    return done_line(**{field: 0}).replace(f'"{field}":0'.encode(), f'"{field}":{raw}'.encode())


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("eval_count", "1" + "0" * 400),  # overflowed float() in the recorder
        ("eval_count", "1e20"),
        ("eval_count", "100000000000000000000"),  # a valid integer, and absurd
        ("eval_count", "12.0"),
        ("eval_count", "-3"),
        ("eval_count", "true"),
        ("prompt_eval_count", "99999999999"),
        ("eval_duration", str(31 * 86_400 * 10**9)),  # 31 days
        ("load_duration", "1e308"),
        ("total_duration", "NaN"),
    ],
)
async def test_absurd_done_numbers_are_invalid(field: str, raw: str) -> None:
    """Counts above 10^7, durations above 30 days, and anything but a non-negative integer
    make the done chunk invalid: the metrics are left as they were."""
    with HostileServer(canned(stream(text_line(), text_line(), done_with(field, raw)))) as server:
        result = await probe_hostile(server)
    assert result.reason is Reason.INVALID_RESPONSE, result.detail
    assert field in result.detail
    registry = new_registry()
    recorder = Recorder(registry)
    recorder.sync_jobs([result.job])
    recorder.record(result)
    assert registry.get_sample_value("ollama_probe_output_tokens_total", LABELS) == 0


async def test_plausible_numbers_are_counted() -> None:
    """The largest sane count is accepted and counted as sent."""
    done = done_with("eval_count", str(10**7))
    with HostileServer(canned(stream(text_line(), text_line(), done))) as server:
        result = await probe_hostile(server)
    assert result.success, result.detail
    assert result.output_tokens == 10**7
