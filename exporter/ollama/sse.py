"""OpenAI's ``/v1/chat/completions`` answers, from raw bytes to ``Chunk`` events.

Streamed, they are server-sent events: ``data: <chat.completion.chunk>`` lines separated by
blank lines and ended by ``data: [DONE]``; the token counts come only in a ``usage`` object
(asked for with ``stream_options.include_usage``), so the final event is ``[DONE]`` after a
``usage``. Servers other than Ollama (vLLM, llama.cpp's server, LM Studio) speak the same;
comment lines (``: ping``) and ``event:``/``id:``/``retry:`` fields are allowed and carry
nothing. There are no server-side timings on this wire: the stats carry counts only.

An error inside the stream is ``{"error": {...}}`` (OpenAI, newer vLLM) or
``{"object": "error", "message": ...}`` (older vLLM): ``stream_error``. A stream that ends
without ``[DONE]``, or with ``[DONE]`` but no usage, is ``truncated``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from exporter.ollama.decoding import (
    MAX_COUNT,
    Chunk,
    EndedEarly,
    InvalidLine,
    LineSplitter,
    WholeBody,
    blank,
    bounded_int,
    error_text,
    is_text,
    load_object,
    preview,
    short_reason,
    text_event,
)
from exporter.result import ServerStats

_IGNORED_FIELDS = (b"event", b"id", b"retry")
# Where reasoning text goes: Ollama and vLLM's newer releases say ``reasoning``, vLLM's
# older ones and llama.cpp's server ``reasoning_content``.
_REASONING_KEYS = ("reasoning", "reasoning_content")


def _error(obj: dict[str, Any]) -> Chunk | None:
    if "error" in obj:
        return Chunk(has_text=False, done=False, error=error_text(obj["error"]))
    if obj.get("object") == "error":
        return Chunk(has_text=False, done=False, error=error_text(obj))
    return None


def _first_choice(obj: dict[str, Any], line: bytes) -> dict[str, Any] | None:
    choices = obj.get("choices")
    if choices is None:
        return None
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise InvalidLine(f"'choices' is not a list of objects: {preview(line)}")
    return choices[0] if choices else None


def _texts(message: Any, line: bytes) -> tuple[bool, bool]:
    """(text, answer text) of a ``delta`` or ``message``."""
    if message is None:
        return False, False
    if not isinstance(message, dict):
        raise InvalidLine(f"'delta' or 'message' is not an object: {preview(line)}")
    content = is_text(message.get("content"))
    thinking = any(is_text(message.get(key)) for key in _REASONING_KEYS)
    return content or thinking, content


def _usage(obj: dict[str, Any], finish_reason: str | None) -> ServerStats | None:
    usage = obj.get("usage")
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise InvalidLine(f"'usage' is not an object: {preview(repr(usage).encode(), 40)}")
    return ServerStats(
        eval_count=bounded_int(usage, "completion_tokens", MAX_COUNT),
        prompt_eval_count=bounded_int(usage, "prompt_tokens", MAX_COUNT),
        done_reason=finish_reason,
        timings=False,
    )


class SseDecoder:
    """A streamed ``/v1/chat/completions`` answer with ``include_usage``."""

    def __init__(self) -> None:
        self._lines = LineSplitter()
        self._usage: ServerStats | None = None
        self._finish_reason: str | None = None

    def feed(self, data: bytes) -> Iterator[Chunk | None]:
        return map(self._line, self._lines.feed(data))

    def finish(self) -> Iterator[Chunk | None]:
        """A last ``data: [DONE]`` without its newline still ends the stream."""
        tail = self._lines.tail().strip()
        if tail in {b"data: [DONE]", b"data:[DONE]"}:
            return iter((self._done(),))
        return iter(())

    def _line(self, line: bytes) -> Chunk | None:
        if line.startswith(b"data: {"):  # nearly every line: no partition, no copies
            value = line[6:]
        else:
            line = line.rstrip(b"\r")
            if blank(line) or line.startswith(b":"):
                return None  # a blank line ends an event; a comment keeps a connection alive
            field, colon, value = line.partition(b":")
            if not colon or field not in (b"data", *_IGNORED_FIELDS):
                raise InvalidLine(f"not a server-sent event line: {preview(line)}")
            if field != b"data":
                return None
            value = value.removeprefix(b" ")
            if value.strip() == b"[DONE]":
                return self._done()
        obj = load_object(value)
        if (error := _error(obj)) is not None:
            return error
        choice = _first_choice(obj, line)
        has_text = has_content = False
        if choice is not None:
            has_text, has_content = _texts(choice.get("delta"), line)
            self._finish_reason = short_reason(choice.get("finish_reason")) or self._finish_reason
        elif "choices" not in obj and "usage" not in obj:
            raise InvalidLine(f"neither 'choices' nor 'usage': {preview(line)}")
        usage = _usage(obj, self._finish_reason)
        if usage is not None:
            self._usage = usage  # some servers repeat it on every chunk: the last one counts
        return text_event(has_text, has_content)

    def _done(self) -> Chunk:
        if self._usage is None:
            raise EndedEarly(
                "data: [DONE] without a usage object (the server ignored "
                "stream_options.include_usage)"
            )
        return Chunk(has_text=False, done=True, stats=self._usage)


def parse_completion(body: bytes) -> Chunk | None:
    """A ``chat.completion`` object (``stream: false``): its text and its usage at once."""
    if not body.strip():
        return None
    obj = load_object(body)
    if (error := _error(obj)) is not None:
        return error
    choice = _first_choice(obj, body)
    if choice is None:
        raise InvalidLine(f"no choices: {preview(body)}")
    has_text, has_content = _texts(choice.get("message"), body)
    usage = _usage(obj, short_reason(choice.get("finish_reason")))
    if usage is None:
        raise EndedEarly("chat.completion without a usage object")
    return Chunk(has_text=has_text, has_content=has_content, done=True, stats=usage)


def whole_completion() -> WholeBody:
    """``stream: false`` on ``/v1/chat/completions``: one ``chat.completion`` object."""
    return WholeBody(parse_completion)
