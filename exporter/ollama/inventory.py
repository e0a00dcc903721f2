"""``/api/ps`` → the residency of a target's configured models: pure, bounded, no I/O.

Only configured models are reported (labels come from config, never from the server), each
matched the way Ollama names models: ``llama3`` is listed as ``llama3:latest``. A model that
is not listed is not loaded. ``size`` is the model's memory footprint as loaded (weights,
KV cache), ``size_vram`` the part of it in GPU memory: 0 on a CPU-only server, below
``size`` when part of the model runs on the CPU (a partial offload, far slower).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exporter.ollama.decoding import InvalidLine, bounded_int, load_object
from exporter.result import Inventory, Residency

# A petabyte: any model size a server can report, and far below a float's exact integers.
MAX_BYTES = 2**50


def full_name(model: str) -> str:
    """The name with its tag, as ``/api/ps`` shows it (``llama3`` → ``llama3:latest``)."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


def _listed(entry: Any) -> tuple[set[str], int, int]:
    if not isinstance(entry, dict):
        raise InvalidLine("/api/ps: a model entry is not an object")
    names = {full_name(v) for v in (entry.get("name"), entry.get("model")) if isinstance(v, str)}
    return names, bounded_int(entry, "size", MAX_BYTES), bounded_int(entry, "size_vram", MAX_BYTES)


def parse_running(body: bytes, target: str, models: Sequence[str]) -> Inventory:
    """The residency of each of ``models`` in an ``/api/ps`` body; ``InvalidLine`` if it is
    not one."""
    listed = load_object(body).get("models")
    if listed is None:
        listed = []  # Go encodes an empty slice as null
    if not isinstance(listed, list):
        raise InvalidLine("/api/ps: 'models' is not a list")
    loaded: dict[str, tuple[int, int]] = {}
    for entry in listed:
        names, size, vram = _listed(entry)
        for name in names:
            loaded[name] = (size, vram)
    residency = []
    for model in models:
        found = loaded.get(full_name(model))
        size, vram = found or (0, 0)
        residency.append(Residency(model, found is not None, size_bytes=size, vram_bytes=vram))
    return Inventory(target, tuple(residency))
