"""``/v1/chat/completions`` bodies, shaped as Ollama's OpenAI middleware writes them.

From Ollama's ``openai`` package: every delta carries ``role`` and ``content`` (thinking text
goes in ``reasoning``, the content then being ``""``); the done response becomes a chunk with
empty content and a ``finish_reason``; with ``stream_options.include_usage`` a copy of that
chunk with ``"choices": []`` and ``usage`` follows; the stream ends with ``data: [DONE]``.
Errors are ``{"error": {"message", "type", "param", "code"}}``, the type named after the
status. Ollama's notes (ollama-wire.md §8) say the role comes only in the first delta and the
finish delta is ``{}``; the upstream source and captured streams show otherwise.
"""

from __future__ import annotations

import random
from typing import Any

from exporter.simulator.responses import dumps

SSE = "text/event-stream"
JSON = "application/json"
DONE_FRAME = b"data: [DONE]\n\n"
FINGERPRINT = "fp_ollama"
_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error"}


def sse(payload: bytes) -> bytes:
    """Frame one event: ``data: <payload>`` and a blank line, no ``event:`` line."""
    return b"data: " + payload + b"\n\n"


def error_body(status: int, message: str) -> bytes:
    """Return OpenAI's error object (no newline; the caller adds one where Go's encoder does)."""
    error = {"message": message, "type": _ERROR_TYPES.get(status, "api_error")}
    return dumps({"error": {**error, "param": None, "code": None}})


class Envelope:
    """The fields every chunk of one completion shares: id, created time and model."""

    def __init__(self, model: str, created_s: int) -> None:
        self._head: dict[str, Any] = {
            "id": f"chatcmpl-{random.randrange(999)}",  # Ollama's own form: chatcmpl-0..998
            "object": "chat.completion.chunk",
            "created": created_s,
            "model": model,
            "system_fingerprint": FINGERPRINT,
        }

    def chunk(self, content: str, reasoning: str = "", finish_reason: str | None = None) -> bytes:
        """Return one ``chat.completion.chunk`` (unframed)."""
        choice = {"index": 0, "delta": _message(content, reasoning), "finish_reason": finish_reason}
        return dumps({**self._head, "choices": [choice]})

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        """Return the usage chunk: no choices, the token counts."""
        usage = _usage(prompt_tokens, completion_tokens)
        return dumps({**self._head, "choices": [], "usage": usage})

    def completion(
        self,
        content: str,
        reasoning: str,
        finish_reason: str | None,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> bytes:
        """Return the whole ``chat.completion`` object of a request that did not stream."""
        choice = {
            "index": 0,
            "message": _message(content, reasoning),
            "finish_reason": finish_reason,
        }
        head = {**self._head, "object": "chat.completion"}
        usage = _usage(prompt_tokens, completion_tokens)
        return dumps({**head, "choices": [choice], "usage": usage}) + b"\n"


def _message(content: str, reasoning: str) -> dict[str, str]:
    message = {"role": "assistant", "content": content}
    if reasoning:
        message["reasoning"] = reasoning
    return message


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
