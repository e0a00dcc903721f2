"""``ollama-probe-exporter demo``: the embedded simulator and the exporter in one process.

A newcomer sees real numbers within seconds, without an Ollama or a GPU: a GPU-like model,
a thinking model, a CPU-like model, and one that fails mid-stream on every probe.
"""

from __future__ import annotations

import asyncio
import sys

from exporter.config import build_settings
from exporter.daemon import Daemon
from exporter.simulator import DEMO_SCRIPTS, OllamaSimulator

DEMO_INTERVAL = "5s"


async def _demo(listen: tuple[str, int]) -> None:
    async with OllamaSimulator(DEMO_SCRIPTS) as simulator:
        settings = build_settings(
            {
                "targets": [
                    {"name": "simulator", "url": simulator.url, "models": list(DEMO_SCRIPTS)}
                ],
                "probes": [
                    {"name": "short", "max_tokens": 32, "interval": DEMO_INTERVAL, "timeout": "30s"}
                ],
            }
        )

        def ready(url: str) -> None:
            print(
                f"\nOllama simulator at {simulator.url} (models: {', '.join(DEMO_SCRIPTS)})\n"
                f"Exporter probing it every {DEMO_INTERVAL}; metrics at {url}/metrics\n"
                f"Try: curl -s {url}/metrics | grep ^ollama_probe_tokens_per_second_sum\n"
                "Ctrl-C to stop.\n",
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
