"""The request a probe sends, and the decoder that reads its answer.

Deterministic, except for the prompt's nonce (``prompt.py``): options, ``num_predict`` and
``think`` are fixed by the profile so that runs are comparable. ``keep_alive`` is sent only
when the profile sets it, as written: it replaces the model's keep-alive for every user.

``api: openai`` speaks ``/v1/chat/completions``: ``max_tokens`` for ``num_predict``, the
options that have an OpenAI field as top-level fields (the others cannot be sent), ``think``
as ``reasoning_effort``, and ``stream_options.include_usage`` so that a streamed answer ends
with its token counts.
"""

from __future__ import annotations

import json
from typing import Any

from exporter.config import ProbeProfile
from exporter.config.values import OPENAI_OPTIONS
from exporter.ollama.decoding import Decoder
from exporter.ollama.prompt import build_prompt
from exporter.ollama.sse import SseDecoder, whole_completion
from exporter.ollama.stream import NdjsonDecoder, whole_answer

API_PATHS = {"generate": "api/generate", "chat": "api/chat", "openai": "v1/chat/completions"}


def request_body(profile: ProbeProfile, model: str, nonce: str) -> dict[str, Any]:
    """The JSON object for the profile's endpoint."""
    prompt = build_prompt(profile, nonce)
    if profile.api == "openai":
        return _openai_body(profile, model, prompt)
    body: dict[str, Any] = {"model": model}
    if profile.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    body["stream"] = profile.stream
    body["options"] = {**profile.options, "num_predict": profile.max_tokens}
    if profile.think is not None:
        body["think"] = profile.think
    if profile.keep_alive is not None:
        body["keep_alive"] = profile.keep_alive
    return body


def _openai_body(profile: ProbeProfile, model: str, prompt: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": profile.stream,
    }
    if profile.stream:
        body["stream_options"] = {"include_usage": True}
    body["max_tokens"] = profile.max_tokens
    body.update((k, v) for k, v in profile.options.items() if k in OPENAI_OPTIONS)
    if profile.think is False:
        body["reasoning_effort"] = "none"
    elif isinstance(profile.think, str):
        body["reasoning_effort"] = profile.think
    if profile.keep_alive is not None:
        body["keep_alive"] = profile.keep_alive
    return body


def decoder_for(profile: ProbeProfile) -> Decoder:
    """A fresh decoder for one answer to the profile's request."""
    if profile.api == "openai":
        return SseDecoder() if profile.stream else whole_completion()
    return NdjsonDecoder() if profile.stream else whole_answer()


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
