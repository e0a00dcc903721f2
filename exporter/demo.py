"""``ollama-probe-exporter demo``: the embedded simulator and the exporter in one process.

A newcomer sees real numbers within seconds, without an Ollama or a GPU: a GPU-like model,
a thinking model, a CPU-like model, and one that fails mid-stream on every probe, each
probed with three workload shapes side by side: a short chat, a prompt of about a thousand
tokens (prefill), and four streams at once (the GPU-like models have two parallel slots,
the CPU one a single slot, so streams queue as on a real server).

Each model is its own target (all on the one simulator), so that the runs of one model
follow one another, as a target's ``concurrency: 1`` makes them, while the models are probed
side by side: the numbers are each shape's own, never one shape queued behind another.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from exporter.config import build_settings
from exporter.daemon import Daemon
from exporter.simulator import DEMO_SCRIPTS, OllamaSimulator

# What each simulated model stands for: its target's name.
DEMO_TARGETS = {
    "llama3.2:1b": "sim-gpu",
    "qwen3:0.6b": "sim-thinking",
    "tinyllama:cpu": "sim-cpu",
    "flaky:latest": "sim-flaky",
}
# Short enough that numbers move while you watch; long enough that a run of every shape of
# the CPU model fits in the shortest interval: a run waits for the target's one slot, and
# if it still waited when its next run was due, that run would be skipped (and logged).
DEMO_PROFILES: list[dict[str, Any]] = [
    {"name": "short", "api": "chat", "max_tokens": 32, "interval": "20s", "timeout": "30s"},
    {"name": "prefill-1k", "prompt_tokens": 1000, "max_tokens": 16, "interval": "30s",
     "timeout": "30s"},
    {"name": "parallel-4", "parallel": 4, "max_tokens": 16, "interval": "30s",
     "timeout": "30s"},
]  # fmt: skip


def demo_settings(url: str) -> dict[str, Any]:
    """The demo's configuration against a simulator at ``url``."""
    targets = [{"name": DEMO_TARGETS[model], "url": url, "models": [model]}
               for model in DEMO_SCRIPTS]  # fmt: skip
    return {"targets": targets, "probes": DEMO_PROFILES}


async def _demo(listen: tuple[str, int]) -> None:
    async with OllamaSimulator(DEMO_SCRIPTS) as simulator:
        settings = build_settings(demo_settings(simulator.url))

        def ready(url: str) -> None:
            print(
                f"\nOllama simulator at {simulator.url} (models: {', '.join(DEMO_SCRIPTS)})\n"
                "Exporter probing each model with three profiles: short (chat), prefill-1k "
                "(a 1000-token prompt) and parallel-4 (four streams at once)\n"
                f"Metrics at {url}/metrics; the last result of every job at {url}/\n"
                f"Try: curl -s {url}/metrics | grep -E '^ollama_probe_(time_to_first_token_"
                "seconds|tokens_per_second|parallel_tokens_per_second)_sum|^ollama_probe_prompt_"
                "tokens'\nCtrl-C to stop.\n",
                file=sys.stderr,
                flush=True,
            )

        # The demo's settings live in no file and no variable, so a reload has nothing to re-read:
        # an empty environ makes it refuse (keeping these settings) rather than pick up
        # OLLAMA_PROBE_* variables meant for another exporter.
        daemon = Daemon(settings, listen=listen, environ={}, on_ready=ready)
        await daemon.run()


def run_demo(listen: tuple[str, int]) -> int:
    try:
        asyncio.run(_demo(listen))
    except OSError as err:
        print(f"demo: cannot listen on {listen[0]}:{listen[1]}: {err.strerror}", file=sys.stderr)
        return 1
    return 0
