"""``ollama-probe-exporter simulator``: the simulator as a standalone server process.

Used by the no-GPU compose demo and by tests that run the exporter in another process.
Without ``--script`` it serves the demo models.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import yaml

from exporter.simulator.script import DEMO_SCRIPTS, ModelScript, load_scripts
from exporter.simulator.server import serve_forever

log = logging.getLogger(__name__)


def _read_scripts(path: Path | None) -> dict[str, ModelScript]:
    if path is None:
        return dict(DEMO_SCRIPTS)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError("expected a mapping with a 'models' key")
    return load_scripts(data)


async def _serve(listen: tuple[str, int], scripts: dict[str, ModelScript]) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)

    def ready(url: str) -> None:
        log.info(
            "simulator listening", extra={"fields": {"address": url, "models": ",".join(scripts)}}
        )

    with contextlib.suppress(asyncio.CancelledError):
        await serve_forever(listen[0], listen[1], scripts, ready)


def run_simulator(listen: tuple[str, int], script: Path | None) -> int:
    try:
        scripts = _read_scripts(script)
    except (OSError, ValueError, yaml.YAMLError) as err:
        print(f"--script: {err}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_serve(listen, scripts))
    except OSError as err:
        print(
            f"--web.listen-address: cannot listen on {listen[0]}:{listen[1]}: {err.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0
