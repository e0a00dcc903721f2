"""Measured TTFT and tokens/s against the simulator's scripted truth, over loopback HTTP.

The tolerance is the contract's: |measured - scripted| <= 2 ms + 1 % of the scripted value.
The simulator runs in its own process, as a real Ollama would: in-process it would share the
prober's event loop and its request handling would be billed to the client's timings.
Each case takes the median of several probes (after one warm-up probe), so a single
garbage-collector pause or scheduler hiccup on a loaded CI machine cannot fail the test,
while a systematic error (counting chunks as tokens, a wrong span, TTFT taken at headers or
at the done chunk) always does: those are off by far more than the tolerance.
"""

from __future__ import annotations

import gc
import json
import statistics
import urllib.request
from collections.abc import Iterator

import pytest

from exporter.clock import SystemClock
from exporter.ollama.client import OllamaClient
from exporter.probe import run_probe
from exporter.result import NS_PER_S, ProbeResult
from exporter.simulator import ModelScript, script_to_dict
from tests.support.jobs import make_job
from tests.support.processes import RunningProcess, simulator_process

RUNS = 5


def tolerance(truth: float) -> float:
    return 0.002 + 0.01 * truth


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


async def probe_many(
    sim: RunningProcess, model: str, runs: int = RUNS, **profile: object
) -> list[ProbeResult]:
    job = make_job(sim.url, model, **profile)
    client = OllamaClient(job.target)
    try:
        await client.version()
        await run_probe(client, job, SystemClock())  # warm-up, not asserted
        results = [await run_probe(client, job, SystemClock()) for _ in range(runs)]
    finally:
        await client.aclose()
    for r in results:
        assert r.success, (r.reason, r.detail)
    return results


def median(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    assert len(present) == len(values)
    return statistics.median(present)


@pytest.mark.parametrize("api", ["generate", "chat"])
async def test_ttft_and_rates_match_script(sim: RunningProcess, api: str) -> None:
    """TTFT = first-token delay and both decode rates = scripted tokens/s, within tolerance."""
    script = ModelScript(first_token_delay=0.3, tokens_per_second=50.0, tokens=200)
    set_script(sim, "gpu:1b", script)
    results = await probe_many(sim, "gpu:1b", api=api, max_tokens=32)
    ttft = median([r.ttft_ns / NS_PER_S if r.ttft_ns else None for r in results])
    assert abs(ttft - 0.3) <= tolerance(0.3)
    # Decode span: 31 intervals of 20 ms = 0.62 s; rate tolerance derived from the span's.
    span_truth = 31 / 50.0
    span = median([r.decode_span_ns / NS_PER_S if r.decode_span_ns else None for r in results])
    assert abs(span - span_truth) <= tolerance(span_truth)
    assert all(r.output_tokens == 32 and not r.tokens_from_chunks for r in results)
    assert median([r.server_tokens_per_second for r in results]) == pytest.approx(50.0, rel=1e-6)
    assert all(r.server is not None and r.server.done_reason == "length" for r in results)


async def test_cpu_like_rate_and_long_first_token(sim: RunningProcess) -> None:
    """A slow model (8 tok/s, 0.6 s to first token) is measured as accurately as a fast one."""
    set_script(sim, "cpu:1b", ModelScript(first_token_delay=0.6, tokens_per_second=8.0, tokens=100))
    results = await probe_many(sim, "cpu:1b", runs=3, max_tokens=6)
    ttft = median([r.ttft_ns / NS_PER_S if r.ttft_ns else None for r in results])
    assert abs(ttft - 0.6) <= tolerance(0.6)
    rate = median([r.tokens_per_second for r in results])
    span_truth = 5 / 8.0
    assert abs(5 / rate - span_truth) <= tolerance(span_truth)


async def test_thinking_chunks_end_ttft(sim: RunningProcess) -> None:
    """For a thinking model TTFT ends at the first thinking chunk, and N includes thinking."""
    script = ModelScript(
        first_token_delay=0.3, tokens_per_second=40.0, tokens=20, thinking_tokens=8
    )
    set_script(sim, "qwen3:0.6b", script)
    results = await probe_many(sim, "qwen3:0.6b", runs=3, api="chat", max_tokens=64)
    ttft = median([r.ttft_ns / NS_PER_S if r.ttft_ns else None for r in results])
    assert abs(ttft - 0.3) <= tolerance(0.3)
    assert all(r.output_tokens == 20 for r in results)
    assert all(r.server is not None and r.server.done_reason == "stop" for r in results)


async def test_chunk_count_is_not_token_count(sim: RunningProcess) -> None:
    """When the server reports eval_count, N is eval_count even if it differs from chunks."""
    set_script(
        sim,
        "m",
        ModelScript(first_token_delay=0.05, tokens_per_second=100.0, tokens=30, thinking_tokens=0),
    )
    results = await probe_many(sim, "m", runs=1, max_tokens=30)
    assert results[0].output_tokens == 30
    assert results[0].text_chunks == 30
    set_script(
        sim,
        "m",
        ModelScript(
            first_token_delay=0.05, tokens_per_second=100.0, tokens=30, report_counts=False
        ),
    )
    fallback = await probe_many(sim, "m", runs=1, max_tokens=30)
    assert fallback[0].tokens_from_chunks
    assert fallback[0].output_tokens == 30
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
    (r,) = await probe_many(sim, "m", runs=1, max_tokens=10)
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
    (r,) = await probe_many(sim, "m", runs=1, max_tokens=5)
    assert r.output_tokens == 5


async def test_client_overhead_stays_small_on_a_fast_model(sim: RunningProcess) -> None:
    """A GPU-like 20 ms first token is measured within 5 ms.

    This is looser than the contract's 2 ms + 1 % (2.2 ms here): on a 2-core VM the client's
    own share (connect, HTTP framing, two process wake-ups) is about 2-3 ms, see the README's
    accuracy benchmark. It guards against regressions: httpx over its default AnyIO network
    backend measured 5.5-6.5 ms here.
    """
    set_script(
        sim, "gpu:fast", ModelScript(first_token_delay=0.02, tokens_per_second=300.0, tokens=500)
    )
    results = await probe_many(sim, "gpu:fast", max_tokens=64)
    ttft = median([r.ttft_ns / NS_PER_S if r.ttft_ns else None for r in results])
    assert 0.02 <= ttft <= 0.02 + 0.005
    span_truth = 63 / 300.0
    span = median([r.decode_span_ns / NS_PER_S if r.decode_span_ns else None for r in results])
    assert abs(span - span_truth) <= tolerance(span_truth)
