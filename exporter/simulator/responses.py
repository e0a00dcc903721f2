"""Ollama's JSON bodies, byte for byte where it matters (field order, omitted zeros).

Field order follows Ollama's Go structs (see ollama-wire.md §3): parsers must not depend on
it, but reproducing it keeps the simulator honest. JSON is compact and UTF-8 like Go's
encoder. Token texts are deterministic words so tests can predict the whole output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from exporter.result import NS_PER_S
from exporter.simulator.script import ModelScript

Endpoint = Literal["generate", "chat"]

ANSWER_WORDS = (
    "Waves", " roll", " in", " from", " the", " open", " sea", ",", " and", " the", " tide",
    " turns", " slowly", " under", " a", " pale", " moon", ".",
)  # fmt: skip
THINKING_WORDS = (
    "Okay", ",", " the", " user", " wants", " one", " sentence", " about", " the", " sea",
    ".", " Keep", " it", " short", ".",
)  # fmt: skip

# Fixed so /api/tags is deterministic; local-time offset as Ollama prints it.
MODIFIED_AT = "2026-11-02T10:15:31.480253174+01:00"


def dumps(obj: Any) -> bytes:
    """Encode compact UTF-8 JSON, as Go's ``encoding/json`` does."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def error_body(message: str) -> bytes:
    """Return Ollama's handler error body (no trailing newline)."""
    return dumps({"error": message})


def rfc3339_nano(unix_ns: int) -> str:
    """Format like Go's ``time.RFC3339Nano`` in UTC: up to 9 digits, trailing zeros dropped."""
    seconds, frac = divmod(unix_ns, NS_PER_S)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


def token_text(index: int, thinking_tokens: int) -> str:
    """Return the text of generated token ``index``; the first ``thinking_tokens`` think."""
    if index < thinking_tokens:
        return THINKING_WORDS[index % len(THINKING_WORDS)]
    return ANSWER_WORDS[(index - thinking_tokens) % len(ANSWER_WORDS)]


def _text_fields(endpoint: Endpoint, content: str, thinking: str) -> dict[str, Any]:
    """Return the text part of a chunk; ``thinking`` is only present when non-empty."""
    if endpoint == "generate":
        return {"response": content, "thinking": thinking} if thinking else {"response": content}
    message = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    return {"message": message}


def _stamp(unix_ns: int | None) -> str:
    return rfc3339_nano(time.time_ns() if unix_ns is None else unix_ns)


def text_line(
    endpoint: Endpoint, model: str, index: int, thinking_tokens: int, unix_ns: int | None = None
) -> bytes:
    """Return the NDJSON line for generated token ``index``, stamped ``unix_ns`` (or now)."""
    text = token_text(index, thinking_tokens)
    content, thinking = ("", text) if index < thinking_tokens else (text, "")
    obj: dict[str, Any] = {"model": model, "created_at": _stamp(unix_ns)}
    obj.update(_text_fields(endpoint, content, thinking))
    obj["done"] = False
    return dumps(obj) + b"\n"


_CONTEXT_BLOCK = 1000
_CONTEXT_IDS = [str(100_000 + (i * 7919) % 900_000).encode() for i in range(_CONTEXT_BLOCK)]


@lru_cache(maxsize=8)
def context_json(length: int) -> bytes:
    """Return a ``context`` array of ``length`` plausible token ids (about 7 bytes each).

    The ids repeat every 1000, so a multi-MB array is copies of one block (milliseconds,
    not the quarter second a fresh list takes); cached so the done chunk's write is not
    delayed by building it.
    """
    whole, rest = divmod(length, _CONTEXT_BLOCK)
    block = b",".join(_CONTEXT_IDS)
    parts = [block] * whole + ([b",".join(_CONTEXT_IDS[:rest])] if rest else [])
    return b"[" + b",".join(parts) + b"]"


@dataclass(frozen=True, slots=True)
class Metrics:
    """The done chunk's numbers, named and ordered as Ollama's; durations in integer ns."""

    total_duration: int
    load_duration: int
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int


def done_metrics(metrics: Metrics, *, report_counts: bool = True) -> dict[str, int]:
    """Return the done chunk's metrics, zero values omitted as Ollama does.

    ``report_counts=False`` keeps only the total and load durations, like a proxy that strips
    the rest.
    """
    values = dataclasses.asdict(metrics)
    if not report_counts:
        values = {name: values[name] for name in ("total_duration", "load_duration")}
    return {name: value for name, value in values.items() if value}


def done_body(
    endpoint: Endpoint,
    model: str,
    done_reason: str,
    metrics: Mapping[str, int],
    *,
    content: str = "",
    thinking: str = "",
    context: bytes | None = None,
    unix_ns: int | None = None,
) -> bytes:
    """Return a final (``done: true``) object without a newline; ``context`` is spliced in.

    Splicing the pre-encoded ``context`` avoids re-encoding a multi-MB array per request.
    """
    obj: dict[str, Any] = {"model": model, "created_at": _stamp(unix_ns)}
    obj.update(_text_fields(endpoint, content, thinking))
    obj.update(done=True, done_reason=done_reason)
    parts = [dumps(obj)[:-1]]
    if context is not None:
        parts.append(b',"context":' + context)
    if metrics:
        parts.append(b"," + dumps(dict(metrics))[1:-1])
    return b"".join(parts) + b"}"


def full_name(model: str) -> str:
    """Return the name with its tag, as ``/api/tags`` shows it (``llama3`` → ``llama3:latest``)."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"


def _digest(model: str) -> str:
    return hashlib.sha256(full_name(model).encode()).hexdigest()


def _details(model: str) -> dict[str, Any]:
    base = full_name(model).rsplit("/", 1)[-1]
    family = re.split(r"[^a-z]", base.lower(), maxsplit=1)[0] or "llama"
    match = re.search(r":(\d+(?:\.\d+)?)b\b", base.lower())
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": f"{match.group(1)}B" if match else "1B",
        "quantization_level": "Q4_K_M",
    }


def _size(model: str) -> int:
    return 400_000_000 + int(_digest(model)[:6], 16) * 100


def tags_body(scripts: Mapping[str, ModelScript]) -> bytes:
    """Return ``/api/tags``: every scripted model, as if pulled."""
    models = [
        {
            "name": full_name(name),
            "model": full_name(name),
            "modified_at": MODIFIED_AT,
            "size": _size(name),
            "digest": _digest(name),
            "details": _details(name),
        }
        for name in scripts
    ]
    return dumps({"models": models})


def ps_body(loaded: Iterable[tuple[str, ModelScript, int]]) -> bytes:
    """Return ``/api/ps`` for ``(name, script, expires_at_unix_ns)`` of the loaded models.

    ``expires_at`` is local time with its offset, as Ollama prints it; ``size_vram`` below
    ``size`` is a partial offload, 0 a model on the CPU only.
    """
    models = [
        {
            "name": full_name(name),
            "model": full_name(name),
            "size": _size(name),
            "digest": _digest(name),
            "details": _details(name),
            "expires_at": _local_time(expires_ns),
            "size_vram": round(_size(name) * script.vram_fraction),
            "context_length": 4096,
        }
        for name, script, expires_ns in loaded
    ]
    return dumps({"models": models})


def _local_time(unix_ns: int) -> str:
    return datetime.fromtimestamp(unix_ns / NS_PER_S).astimezone().isoformat()


def show_body(model: str, script: ModelScript) -> bytes:
    """Return a minimal ``/api/show``: capabilities say whether the model thinks."""
    capabilities = ["completion", "thinking"] if script.thinking_tokens else ["completion"]
    return dumps(
        {
            "modelfile": f"FROM {full_name(model)}\n",
            "template": "{{ .Prompt }}",
            "details": _details(model),
            "model_info": {},
            "capabilities": capabilities,
            "modified_at": MODIFIED_AT,
        }
    )


def load_only_body(
    endpoint: Endpoint, model: str, done_reason: str, unix_ns: int | None = None
) -> bytes:
    """Return the single object that answers a load-only (empty prompt/messages) request."""
    obj: dict[str, Any] = {"model": model, "created_at": _stamp(unix_ns)}
    obj.update(_text_fields(endpoint, "", ""))
    obj.update(done=True, done_reason=done_reason)
    return dumps(obj)
