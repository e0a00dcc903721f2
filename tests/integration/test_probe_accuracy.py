"""Measured TTFT and tokens/s against the simulator's scripted truth, over loopback HTTP.

The simulator runs in its own process, as a real Ollama would: in-process it would share the
prober's event loop and its request handling would be billed to the client's timings.

No bound here is absolute, because a loaded 2-core CI machine adds milliseconds of wake-up
delay to any client. Each check is one that load cannot break but a measurement bug does:

- TTFT is never below the scripted delay (the server waits that long after reading the
  request, and TTFT also counts connect and send);
- TTFT exceeds the bare-protocol floor (``tests.support.floor``), probed on the same stream
  interleaved with the exporter, by less than half a token interval: a TTFT taken at the
  wrong chunk is off by at least a whole one;
- the decode span is within half a token interval of the script, for the same reason.

Medians of several probes, after a warm-up, absorb a single hiccup. With both cores of a
2-core machine saturated by a CPU hog the exporter measured ~5 ms above the floor (about 1 ms
on a quiet machine), so the scenarios decode at 25 tok/s or slower (a 20 ms half interval).
How close the exporter comes to the floor, and the absolute error against the 2 ms + 1 %
target, are performance numbers: ``make bench`` (``benchmarks/accuracy.py``) prints them.
"""

from __future__ import annotations

import gc
import json
import statistics
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from exporter.clock import SystemClock
from exporter.ollama.client import OllamaClient
from exporter.probe import run_probe
from exporter.result import NS_PER_S, ProbeResult
from exporter.simulator import ModelScript, script_to_dict
from tests.support.floor import floor_ttft_ns
from tests.support.jobs import make_job
from tests.support.processes import RunningProcess, simulator_process

pytestmark = pytest.mark.slow  # a simulator process and real waits: not in the fast tier

RUNS = 5


@pytest.fixture(autouse=True)
def frozen_gc() -> Iterator[None]:
    """Freeze the test process's objects, as the daemon does after start-up (``gc.freeze``):
    otherwise a full collection over pytest's own objects can land inside a measurement."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningProcess]:
    with simulator_process() as proc:
        yield proc


def set_script(sim: RunningProcess, model: str, script: ModelScript) -> None:
    """Script a model in the simulator process through its control API."""
    data = json.dumps(script_to_dict(script)).encode()
    req = urllib.request.Request(f"{sim.url}/_simulator/models/{model}", data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


@dataclass
class Measured:
    """Probes of one job and, interleaved with them, floor TTFTs of the same stream."""

    results: list[ProbeResult]
    floor_s: list[float]

    def ttft_s(self) -> list[float]:
        values = [r.ttft_ns / NS_PER_S for r in self.results if r.ttft_ns is not None]
        assert len(values) == len(self.results)
        return values

    def excess_s(self) -> float:
        """Median over pairs of (exporter TTFT - floor TTFT) probed back to back."""
        return statistics.median(t - f for t, f in zip(self.ttft_s(), self.floor_s, strict=True))

    def span_s(self) -> float:
        spans = [r.decode_span_ns / NS_PER_S for r in self.results if r.decode_span_ns]
        assert len(spans) == len(self.results)
        return statistics.median(spans)

    def check_ttft(self, delay: float, tokens_per_second: float) -> None:
        assert min(self.ttft_s()) >= delay, (self.ttft_s(), delay)
        assert self.excess_s() < 0.5 / tokens_per_second, (self.ttft_s(), self.floor_s)


async def probe_many(
    sim: RunningProcess, model: str, runs: int = RUNS, **profile: object
) -> Measured:
    job = make_job(sim.url, model, **profile)
    api = str(profile.get("api", "generate"))
    client = OllamaClient(job.target)
    measured = Measured([], [])
    try:
        await client.version()
        await run_probe(client, job, SystemClock())  # warm-up, not asserted
        await floor_ttft_ns(sim.url, model, api=api, tokens=1)
        for _ in range(runs):
            measured.results.append(await run_probe(client, job, SystemClock()))
            measured.floor_s.append(
                await floor_ttft_ns(sim.url, model, api=api, tokens=1) / NS_PER_S
            )
    finally:
        await client.aclose()
    for r in measured.results:
        assert r.success, (r.reason, r.detail)
    return measured


@pytest.mark.parametrize("api", ["generate", "chat", "openai"])
async def test_ttft_and_rates_match_script(sim: RunningProcess, api: str) -> None:
    """TTFT follows the first-token delay and the decode span the scripted rate, on every
    wire (``/v1`` has no server timings: its server rate is absent)."""
    script = ModelScript(first_token_delay=0.15, tokens_per_second=25.0, tokens=200)
    set_script(sim, "gpu:1b", script)
    measured = await probe_many(sim, "gpu:1b", api=api, max_tokens=8)
    measured.check_ttft(0.15, 25.0)
    # Decode span: 7 intervals of 40 ms = 0.28 s.
    assert abs(measured.span_s() - 7 / 25.0) < 0.5 / 25.0
    results = measured.results
    assert all(r.output_tokens == 8 and not r.tokens_from_chunks for r in results)
    server_rates = [r.server_tokens_per_second for r in results]
    if api == "openai":
        assert server_rates == [None] * len(results)
    else:
        assert server_rates == pytest.approx([25.0] * len(results), rel=1e-6)
    assert all(r.server is not None and r.server.done_reason == "length" for r in results)


async def test_cpu_like_rate_and_long_first_token(sim: RunningProcess) -> None:
    """A slow model (8 tok/s, 0.3 s to first token) is measured like a fast one."""
    set_script(sim, "cpu:1b", ModelScript(first_token_delay=0.3, tokens_per_second=8.0, tokens=100))
    measured = await probe_many(sim, "cpu:1b", runs=3, max_tokens=3)
    measured.check_ttft(0.3, 8.0)
    assert abs(measured.span_s() - 2 / 8.0) < 0.5 / 8.0
    rates = [r.tokens_per_second for r in measured.results]
    assert statistics.median(r for r in rates if r is not None) == pytest.approx(8.0, rel=0.1)


@pytest.mark.parametrize("api", ["chat", "openai"])
async def test_thinking_chunks_end_ttft(sim: RunningProcess, api: str) -> None:
    """For a thinking model TTFT ends at the first thinking chunk, the first-answer-token
    time at the first answer chunk (three token intervals later), and N includes thinking."""
    script = ModelScript(first_token_delay=0.1, tokens_per_second=25.0, tokens=6, thinking_tokens=3)
    set_script(sim, "qwen3:0.6b", script)
    measured = await probe_many(sim, "qwen3:0.6b", runs=RUNS, api=api, max_tokens=64)
    measured.check_ttft(0.1, 25.0)
    gaps = [(r.ttfct_ns - r.ttft_ns) / NS_PER_S for r in measured.results
            if r.ttfct_ns is not None and r.ttft_ns is not None]  # fmt: skip
    assert len(gaps) == len(measured.results)
    assert abs(statistics.median(gaps) - 3 / 25.0) < 0.5 / 25.0, gaps
    assert all(r.output_tokens == 6 for r in measured.results)
    assert all(r.server is not None and r.server.done_reason == "stop" for r in measured.results)


async def test_chunk_count_is_not_token_count(sim: RunningProcess) -> None:
    """When the server reports eval_count, N is eval_count even if it differs from chunks."""
    set_script(
        sim,
        "m",
        ModelScript(first_token_delay=0.02, tokens_per_second=200.0, tokens=12, thinking_tokens=0),
    )
    results = (await probe_many(sim, "m", runs=1, max_tokens=12)).results
    assert results[0].output_tokens == 12
    assert results[0].text_chunks == 12
    set_script(
        sim,
        "m",
        ModelScript(
            first_token_delay=0.02, tokens_per_second=200.0, tokens=12, report_counts=False
        ),
    )
    fallback = (await probe_many(sim, "m", runs=1, max_tokens=12)).results
    assert fallback[0].tokens_from_chunks
    assert fallback[0].output_tokens == 12
    assert fallback[0].server_tokens_per_second is None


async def test_reported_durations_pass_through(sim: RunningProcess) -> None:
    """load_duration and prefill come from the done chunk exactly as the server sent them."""
    script = ModelScript(
        first_token_delay=0.05,
        tokens=10,
        tokens_per_second=100.0,
        load_duration=1.5,
        prompt_eval_count=40,
        prompt_eval_duration=0.02,
    )
    set_script(sim, "m", script)
    (r,) = (await probe_many(sim, "m", runs=1, max_tokens=10)).results
    assert r.server is not None
    assert r.server.load_duration_ns == 1_500_000_000
    assert r.prompt_tokens_per_second == pytest.approx(2000.0)


async def test_huge_final_line_succeeds(sim: RunningProcess) -> None:
    """A done line of several MB (a long context array) is read whole and parsed."""
    set_script(
        sim,
        "m",
        ModelScript(
            first_token_delay=0.02, tokens=5, tokens_per_second=200.0, context_tokens=300_000
        ),
    )
    (r,) = (await probe_many(sim, "m", runs=1, max_tokens=5)).results
    assert r.output_tokens == 5
