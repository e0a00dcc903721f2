"""Measurement accuracy: the prober's TTFT and tokens/s against the simulator's scripted truth.

Runs the simulator in its own process (as a real Ollama would be), scripts a GPU-like, a
mid-range and a CPU-like model, probes each several times, and prints the error of every
measured value against its ground truth, for two clients: the exporter's (httpx over the lean
asyncio network backend) and plain httpx (over httpcore's AnyIO backend), to show what the
backend buys. A third row is the floor: the least a Python asyncio client can do (request
bytes built in advance and written the moment the connection is made, arrival stamped in
``data_received``), i.e. what this machine and the simulator cost before any HTTP library.

    python -m benchmarks.accuracy [--runs N]

Errors are measured - scripted. The scripted TTFT is the simulator's delay between having
read the request and writing the first chunk, so the TTFT error includes everything the
definition counts in TTFT that is not the server's: connect, sending the request, the kernel's
loopback and the client's own overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from exporter.clock import SystemClock
from exporter.config import JobSpec, Target
from exporter.ollama.client import OllamaClient
from exporter.probe import run_probe
from exporter.result import NS_PER_S
from exporter.simulator import ModelScript, script_to_dict
from tests.support.floor import floor_ttft_ns
from tests.support.jobs import make_job
from tests.support.processes import simulator_process


@dataclass(frozen=True)
class Scenario:
    name: str
    script: ModelScript
    max_tokens: int


SCENARIOS = (
    Scenario(
        "gpu-like", ModelScript(first_token_delay=0.02, tokens_per_second=300.0, tokens=500), 64
    ),
    Scenario("mid", ModelScript(first_token_delay=0.25, tokens_per_second=50.0, tokens=500), 32),
    Scenario("cpu-like", ModelScript(first_token_delay=1.5, tokens_per_second=5.0, tokens=500), 8),
)


def _plain_httpx(target: Target) -> OllamaClient:
    """The same client over httpx's default AnyIO backend, for comparison."""
    transport = httpx.AsyncHTTPTransport(
        trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)
    )
    return OllamaClient(target, transport=transport)


def _lean(target: Target) -> OllamaClient:
    return OllamaClient(target)


def _put_script(url: str, model: str, script: ModelScript) -> None:
    data = json.dumps(script_to_dict(script)).encode()
    req = urllib.request.Request(f"{url}/_simulator/models/{model}", data=data, method="PUT")
    urllib.request.urlopen(req, timeout=5).close()


async def _measure(
    make_client: Callable[[Target], OllamaClient], job: JobSpec, runs: int
) -> tuple[list[float], list[float]]:
    """TTFT errors (ms) and tokens/s relative errors (%) over ``runs`` probes."""
    client = make_client(job.target)
    try:
        await client.version()
        await run_probe(client, job, SystemClock())  # warm-up
        ttft_err: list[float] = []
        tps_err: list[float] = []
        script_delay = _SCRIPTS[job.model].first_token_delay
        tps_truth = _SCRIPTS[job.model].tokens_per_second
        for _ in range(runs):
            r = await run_probe(client, job, SystemClock())
            if not r.success or r.ttft_ns is None or r.tokens_per_second is None:
                raise RuntimeError(f"probe failed: {r.reason} {r.detail}")
            ttft_err.append((r.ttft_ns / NS_PER_S - script_delay) * 1000)
            tps_err.append((r.tokens_per_second / tps_truth - 1) * 100)
        return ttft_err, tps_err
    finally:
        await client.aclose()


_SCRIPTS: dict[str, ModelScript] = {}


async def _floor(url: str, model: str, delay: float, runs: int) -> list[float]:
    """TTFT errors (ms) of the bare-protocol client: the floor under any HTTP client."""
    return [(await floor_ttft_ns(url, model, tokens=1)) / 1e6 - delay * 1000 for _ in range(runs)]


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"median {statistics.median(values):+7.2f}  p90 {p90:+7.2f}  max {max(values):+7.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    gc.collect()
    gc.freeze()  # as the daemon does after start-up
    with simulator_process() as sim:
        for scenario in SCENARIOS:
            _SCRIPTS[scenario.name] = scenario.script
            _put_script(sim.url, scenario.name, scenario.script)
        print(f"{args.runs} probes per row; errors are measured - scripted truth\n")
        for scenario in SCENARIOS:
            s = scenario.script
            job = make_job(sim.url, scenario.name, max_tokens=scenario.max_tokens, timeout="60s")
            print(
                f"{scenario.name}: scripted TTFT {s.first_token_delay * 1000:g} ms, "
                f"{s.tokens_per_second:g} tok/s, {scenario.max_tokens} tokens"
            )
            for label, factory in (
                ("exporter (lean backend)", _lean),
                ("plain httpx (anyio)", _plain_httpx),
            ):
                runs = args.runs if s.first_token_delay < 1 else max(3, args.runs // 4)
                ttft, tps = asyncio.run(_measure(factory, job, runs))
                tol = 2 + 10 * s.first_token_delay
                print(f"  {label:<24} TTFT error ms   {_summary(ttft)}   (tolerance ±{tol:.1f})")
                print(f"  {'':<24} tokens/s error % {_summary(tps)}   (tolerance ±1 %)")
            floor = asyncio.run(_floor(sim.url, scenario.name, s.first_token_delay, 10))
            print(f"  {'floor (bare protocol)':<24} TTFT error ms   {_summary(floor)}")
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
