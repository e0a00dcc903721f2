"""Ollama's NDJSON answers, from raw bytes to ``Chunk`` events: pure code, no I/O, no clock.

Why hand-written: httpx's ``aiter_lines()`` splits like ``str.splitlines()``, on U+0085,
U+2028 and friends too, and Go's JSON encoder leaves U+0085 raw inside strings, so model
text containing NEL would cut a chunk in two. Lines can arrive split across reads, and the
final generate line (with its ``context`` array) can be megabytes. The bounds are those of
``decoding.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from exporter.ollama.decoding import (
    CONTENT,
    MAX_COUNT,
    MAX_DURATION_NS,
    Chunk,
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

# Fields of the done chunk: wire name → (ServerStats field, largest accepted value).
_STAT_FIELDS = {
    "eval_count": ("eval_count", MAX_COUNT),
    "eval_duration": ("eval_duration_ns", MAX_DURATION_NS),
    "prompt_eval_count": ("prompt_eval_count", MAX_COUNT),
    "prompt_eval_duration": ("prompt_eval_duration_ns", MAX_DURATION_NS),
    "load_duration": ("load_duration_ns", MAX_DURATION_NS),
    "total_duration": ("total_duration_ns", MAX_DURATION_NS),
}


def _content(obj: dict[str, Any]) -> bool:
    """Answer text: ``response`` (generate) or ``message.content`` (chat)."""
    message = obj.get("message")
    return is_text(obj.get("response")) or (
        isinstance(message, dict) and is_text(message.get("content"))
    )


def _thinking(obj: dict[str, Any]) -> bool:
    message = obj.get("message")
    return is_text(obj.get("thinking")) or (
        isinstance(message, dict) and is_text(message.get("thinking"))
    )


def _stats(obj: dict[str, Any]) -> ServerStats:
    values: dict[str, Any] = {
        field: bounded_int(obj, wire_name, bound)
        for wire_name, (field, bound) in _STAT_FIELDS.items()
    }
    return ServerStats(**values, done_reason=short_reason(obj.get("done_reason")))


def parse_chunk(line: bytes) -> Chunk | None:
    """Parse one line; ``None`` for a blank line, ``InvalidLine`` for anything unexpected.

    One JSON decode per line; a line that is not final yields one of the shared events.
    """
    if blank(line):
        return None
    obj = load_object(line)
    if "error" in obj:
        return Chunk(has_text=False, done=False, error=error_text(obj["error"]))
    done = obj.get("done")
    if done is False:
        return CONTENT if _content(obj) else text_event(_thinking(obj), False)
    if done is not True:
        raise InvalidLine(f"no boolean 'done' field: {preview(line)}")
    content = _content(obj)
    return Chunk(
        has_text=content or _thinking(obj), has_content=content, done=True, stats=_stats(obj)
    )


class NdjsonDecoder:
    """A streamed ``/api/generate`` or ``/api/chat`` answer: one chunk per line."""

    def __init__(self) -> None:
        self._lines = LineSplitter()

    def feed(self, data: bytes) -> Iterator[Chunk | None]:
        return map(parse_chunk, self._lines.feed(data))

    def finish(self) -> Iterator[Chunk | None]:
        """A last line without its newline still counts (it arrived with the last read);
        one that does not parse is a stream cut short, not a bad line."""
        tail = self._lines.tail()
        try:
            chunk = parse_chunk(tail)
        except InvalidLine:
            return iter(())
        return iter((chunk,))


def whole_answer() -> WholeBody:
    """``stream: false`` on ``/api/generate`` or ``/api/chat``: the done chunk alone."""
    return WholeBody(parse_chunk)
