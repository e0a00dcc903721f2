"""Validate a generation request as Ollama does, deciding everything before any waiting.

Errors come back as ``Reject`` with Ollama's status and message (ollama-wire.md §2, §5, §6),
so the server can answer them without knowing the rules. ``/v1/chat/completions`` is
translated to the native chat request first, as Ollama's OpenAI middleware does.

These are hand-written rather than pydantic models on purpose: what matters is Ollama's
order of checks and its Go error texts, which a schema validator would not reproduce.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from exporter.config.values import GO_DURATION_RE, THINK_LEVELS, keep_alive_seconds
from exporter.ollama.prompt import CHARS_PER_TOKEN  # a sized prompt reads back as its size
from exporter.simulator.responses import Endpoint
from exporter.simulator.script import ModelScript

Api = Literal["generate", "chat", "openai"]
# The levels the exporter may send, plus "max", which recent Ollama also accepts.
ACCEPTED_THINK_LEVELS = frozenset({*THINK_LEVELS, "max"})
REASONING_EFFORTS = ("high", "medium", "low", "none")


class Reject(Exception):
    """A request Ollama would refuse before generating: ``status`` with an error message.

    ``middleware`` marks a refusal by the OpenAI middleware itself (rather than by the
    native handler behind it), whose body Go encodes slightly differently.
    """

    def __init__(self, status: int, message: str, *, middleware: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.middleware = middleware


@dataclass(frozen=True, slots=True)
class Generation:
    """A validated generation request: what to send, decided before any waiting starts."""

    api: Api
    model: str  # as sent: Ollama echoes the request's name, untouched
    script: ModelScript
    stream: bool
    tokens: int  # generated tokens, after the num_predict cap
    thinking: int  # how many of ``tokens`` are thinking, at the start
    done_reason: str  # stop, length, load or unload
    load_only: bool
    context: bool  # whether the done chunk carries a ``context`` array
    prompt_tokens: int  # reported as prompt_eval_count / usage.prompt_tokens
    keep_alive: float | None  # seconds; None leaves the model's as it is; < 0 = forever
    include_usage: bool = False  # /v1 streams: a usage chunk before [DONE]

    @property
    def endpoint(self) -> Endpoint:
        """The native endpoint whose chunk shapes apply (``/v1`` is chat underneath)."""
        return "generate" if self.api == "generate" else "chat"

    @property
    def prefill_seconds(self) -> float:
        """Scripted prefill time before the first token: 0 unless a prefill rate is set."""
        rate = self.script.prompt_tokens_per_second
        return 0.0 if rate is None else self.prompt_tokens / rate


def prompt_tokens(text_chars: int) -> int:
    """Approximate a prompt's token count from its length: ~4 characters per token, >= 1.

    The same rule for every API, so long-prompt probes report (and, with a prefill rate,
    take) proportionally more; real tokenizers and chat templates differ by model.
    """
    return max(1, math.ceil(text_chars / CHARS_PER_TOKEN))


def parse_generation(
    endpoint: Endpoint, raw: bytes, lookup: Callable[[str], ModelScript | None]
) -> Generation:
    """Validate a native request body in Ollama's order; raise ``Reject`` with its status."""
    if not raw.strip():
        raise Reject(400, "missing request body")
    go_type = "api.GenerateRequest" if endpoint == "generate" else "api.ChatRequest"
    body = _json_object(raw, go_type)
    return _native(endpoint, body, lookup)


def parse_openai(raw: bytes, lookup: Callable[[str], ModelScript | None]) -> Generation:
    """Validate a ``/v1/chat/completions`` body: the middleware's checks, then chat's."""
    if not raw.strip():
        raise Reject(400, "EOF", middleware=True)
    try:
        body = _json_object(raw, "openai.ChatCompletionRequest")
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
        ):
            kind = "string" if isinstance(max_tokens, str) else "number"
            raise Reject(
                400,
                f"json: cannot unmarshal {kind} into Go struct field "
                "ChatCompletionRequest.max_tokens of type int",
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Reject(400, "[] is too short - 'messages'")
        think = _reasoning(body)
    except Reject as exc:
        raise Reject(exc.status, exc.message, middleware=True) from None
    options = {} if max_tokens is None else {"num_predict": max_tokens}
    stream_options = body.get("stream_options")
    native = {
        "model": body.get("model"),
        "messages": messages,
        "stream": body.get("stream") is True,  # /v1 defaults to not streaming
        "options": options,
        "think": think,
    }
    gen = _native("chat", native, lookup)
    include = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    return dataclasses.replace(gen, api="openai", include_usage=include)


def _json_object(raw: bytes, go_type: str) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise Reject(400, f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        kind = "array" if isinstance(body, list) else type(body).__name__
        raise Reject(400, f"json: cannot unmarshal {kind} into Go value of type {go_type}")
    return body


def _native(
    endpoint: Endpoint, body: dict[str, Any], lookup: Callable[[str], ModelScript | None]
) -> Generation:
    keep_alive = _keep_alive(body.get("keep_alive"))  # Go decodes it with the body
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
    done_reason = "length" if cap is not None and cap < script.tokens else "stop"
    counted = script.prompt_eval_count
    return Generation(
        api=endpoint,
        model=model,
        script=script,
        stream=body.get("stream") is not False,
        tokens=tokens,
        thinking=min(thinking, tokens),
        done_reason=("unload" if keep_alive == 0 else "load") if prompt_empty else done_reason,
        load_only=prompt_empty,
        context=endpoint == "generate" and script.context_tokens > 0 and not body.get("raw"),
        prompt_tokens=prompt_tokens(_prompt_chars(body)) if counted is None else counted,
        keep_alive=keep_alive,
    )


def _prompt_chars(body: dict[str, Any]) -> int:
    """Characters of prompt text: prompt and system, or every message's text content."""
    texts = [body.get("prompt"), body.get("system")]
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        parts = content if isinstance(content, list) else [content]
        texts += [p.get("text") if isinstance(p, dict) else p for p in parts]
    return sum(len(text) for text in texts if isinstance(text, str))


def _keep_alive(value: Any) -> float | None:
    """Parse ``keep_alive`` like Go's ``api.Duration``: seconds, or a duration string."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise Reject(400, "json: cannot unmarshal keep_alive: expected a number or a string")
    if not GO_DURATION_RE.fullmatch(value):
        digits = value.lstrip("+-").replace(".", "", 1)
        problem = "missing unit in duration" if digits.isdigit() else "invalid duration"
        raise Reject(400, f'time: {problem} "{value}"')
    return keep_alive_seconds(value)


def _reasoning(body: dict[str, Any]) -> bool | str | None:
    """Map ``reasoning.effort`` or ``reasoning_effort`` to ``think``, as the middleware does."""
    reasoning = body.get("reasoning")
    effort = (
        reasoning.get("effort") if isinstance(reasoning, dict) else body.get("reasoning_effort")
    )
    if not effort:
        return None
    if effort not in REASONING_EFFORTS:
        raise Reject(
            400,
            f'invalid reasoning value: \'{effort}\' (must be "high", "medium", "low", or "none")',
        )
    return False if effort == "none" else str(effort)


def _thinking_tokens(think: Any, model: str, script: ModelScript) -> int:
    """Omitted ``think`` enables thinking on a thinking model; ``false`` disables it."""
    if think is None:
        return script.thinking_tokens
    if think is False:
        return 0
    if think is not True and think not in ACCEPTED_THINK_LEVELS:
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
