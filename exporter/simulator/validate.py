"""Validate a generation request as Ollama does, deciding everything before any waiting.

Errors come back as ``Reject`` with Ollama's status and message (ollama-wire.md §2, §5, §6),
so the server can answer them without knowing the rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.simulator.responses import Endpoint
from exporter.simulator.script import ModelScript

THINK_LEVELS = frozenset({"low", "medium", "high", "max"})


class Reject(Exception):
    """A request Ollama would refuse before generating: ``status`` with a JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Generation:
    """A validated generation request: what to send, decided before any waiting starts."""

    endpoint: Endpoint
    model: str  # as sent: Ollama echoes the request's name, untouched
    script: ModelScript
    stream: bool
    tokens: int  # generated tokens, after the num_predict cap
    thinking: int  # how many of ``tokens`` are thinking, at the start
    done_reason: str  # stop, length, load or unload
    load_only: bool
    context: bool  # whether the done chunk carries a ``context`` array


def parse_generation(
    endpoint: Endpoint, raw: bytes, lookup: Callable[[str], ModelScript | None]
) -> Generation:
    """Validate a request body in Ollama's order; raise ``Reject`` with its status and text."""
    if not raw.strip():
        raise Reject(400, "missing request body")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise Reject(400, f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        kind = "array" if isinstance(body, list) else type(body).__name__
        go_type = "GenerateRequest" if endpoint == "generate" else "ChatRequest"
        raise Reject(400, f"json: cannot unmarshal {kind} into Go value of type api.{go_type}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise Reject(400, "model is required")
    script = lookup(model)
    if script is None:
        raise Reject(404, f"model '{model}' not found")
    thinking = _thinking_tokens(body.get("think"), model, script)
    cap = _num_predict(body.get("options"))
    tokens = script.tokens if cap is None else min(script.tokens, cap)
    prompt_empty = not body.get("prompt") if endpoint == "generate" else not body.get("messages")
    unload = body.get("keep_alive") in (0, "0", "0s")
    done_reason = "length" if cap is not None and cap < script.tokens else "stop"
    return Generation(
        endpoint=endpoint,
        model=model,
        script=script,
        stream=body.get("stream") is not False,
        tokens=tokens,
        thinking=min(thinking, tokens),
        done_reason=("unload" if unload else "load") if prompt_empty else done_reason,
        load_only=prompt_empty,
        context=endpoint == "generate" and script.context_tokens > 0 and not body.get("raw"),
    )


def _thinking_tokens(think: Any, model: str, script: ModelScript) -> int:
    """Omitted ``think`` enables thinking on a thinking model; ``false`` disables it."""
    if think is None:
        return script.thinking_tokens
    if think is False:
        return 0
    if think is not True and think not in THINK_LEVELS:
        raise Reject(
            400,
            f'invalid think value: {json.dumps(think)} (must be "high", "medium", "low", '
            "true, or false)",
        )
    if script.thinking_tokens == 0:
        raise Reject(400, f'"{model}" does not support thinking')
    return script.thinking_tokens


def _num_predict(options: Any) -> int | None:
    """Return the ``num_predict`` cap, or None for open-ended (missing or negative)."""
    if options is None:
        return None
    if not isinstance(options, dict):
        raise Reject(400, "json: cannot unmarshal options: expected an object")
    value = options.get("num_predict")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        # Ollama's option parsing answers a wrong type with 500, not 400.
        raise Reject(500, 'option "num_predict" must be of type integer')
    return None if value < 0 else int(value)
