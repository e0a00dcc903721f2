"""/api/ps bodies → residency of the configured models."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporter.ollama.decoding import InvalidLine
from exporter.ollama.inventory import MAX_BYTES, full_name, parse_running


def ps(*models: dict[str, Any]) -> bytes:
    return json.dumps({"models": list(models)}).encode()


def entry(name: str, size: int = 1000, vram: int = 1000) -> dict[str, Any]:
    return {"name": name, "model": name, "size": size, "size_vram": vram, "context_length": 4096}


def test_configured_models_by_ollama_name() -> None:
    """A configured name without a tag matches name:latest; an unlisted model is not loaded."""
    inventory = parse_running(ps(entry("llama3:latest", 900, 300), entry("x:1b")), "t",
                              ["llama3", "qwen3:0.6b"])  # fmt: skip
    assert inventory.target == "t"
    llama, qwen = inventory.models or ()
    assert (llama.model, llama.loaded, llama.size_bytes, llama.vram_bytes) == (
        "llama3", True, 900, 300)  # fmt: skip
    assert llama.partial_offload
    assert (qwen.model, qwen.loaded, qwen.partial_offload) == ("qwen3:0.6b", False, False)


def test_full_name() -> None:
    """Tags are added only where the last path segment has none."""
    assert full_name("llama3") == "llama3:latest"
    assert full_name("hf.co/org/model:Q4") == "hf.co/org/model:Q4"
    assert full_name("registry:5000/m") == "registry:5000/m:latest"


def test_null_list_is_empty() -> None:
    """Go encodes an empty slice as null: nothing is loaded."""
    (m,) = parse_running(b'{"models":null}', "t", ["m"]).models or ()
    assert not m.loaded


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"models": {}}',
        b'{"models": [1]}',
        json.dumps({"models": [entry("m", size=-1)]}).encode(),
        json.dumps({"models": [entry("m", vram=MAX_BYTES + 1)]}).encode(),
        b'{"models":[' + b"{}," * 30_000 + b"{}]}",
    ],
)
def test_invalid_bodies(body: bytes) -> None:
    """What is not an /api/ps answer, absurd sizes and costly JSON are refused."""
    with pytest.raises(InvalidLine):
        parse_running(body, "t", ["m"])
