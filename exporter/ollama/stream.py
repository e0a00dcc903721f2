"""Ollama's NDJSON stream, from raw bytes to typed chunks: pure code, no I/O, no clock.

Why hand-written: httpx's ``aiter_lines()`` splits like ``str.splitlines()``, on U+0085,
U+2028 and friends too, and Go's JSON encoder leaves U+0085 raw inside strings, so model
text containing NEL would cut a chunk in two. Byte 0x0A never occurs inside a multi-byte
UTF-8 sequence, so splitting bytes on ``b"\\n"`` is always safe. Lines can arrive split
across reads, and the final generate line (with its ``context`` array) can be megabytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from exporter.result import ServerStats

DEFAULT_MAX_LINE_BYTES = 32 * 1024 * 1024

# Fields of the done chunk that are integer counters or nanosecond durations.
_STAT_FIELDS = {
    "eval_count": "eval_count",
    "eval_duration": "eval_duration_ns",
    "prompt_eval_count": "prompt_eval_count",
    "prompt_eval_duration": "prompt_eval_duration_ns",
    "load_duration": "load_duration_ns",
    "total_duration": "total_duration_ns",
}


class InvalidLine(ValueError):
    """A line that is not the JSON chunk Ollama sends; the probe fails as invalid_response."""


class LineTooLong(InvalidLine):
    """A line longer than the cap: refuse it rather than buffer without bound."""


class LineSplitter:
    """Splits a byte stream into ``\\n``-terminated lines, carrying partial lines over.

    ``feed`` remembers how far it has already searched, so a multi-megabyte line arriving in
    many reads is scanned once, not once per read.
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._buf = bytearray()
        self._scanned = 0
        self._max = max_line_bytes

    def feed(self, data: bytes) -> list[bytes]:
        """Add one read; return the complete lines it finished (without the ``\\n``)."""
        self._buf += data
        lines: list[bytes] = []
        start = 0
        while True:
            end = self._buf.find(b"\n", max(start, self._scanned))
            if end < 0:
                break
            lines.append(bytes(self._buf[start:end]))
            start = end + 1
        if start:
            del self._buf[:start]
        self._scanned = len(self._buf)
        if self._scanned > self._max:
            raise LineTooLong(f"line exceeds {self._max} bytes without a newline")
        return lines

    def tail(self) -> bytes:
        """What is left after the last newline: a partial line if the stream ended early."""
        return bytes(self._buf)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One parsed stream line.

    ``has_text`` is True when ``response``, ``thinking``, ``message.content`` or
    ``message.thinking`` is a non-empty string (whitespace is text). ``error`` is the text of
    an ``{"error": …}`` line. ``stats`` is set on the done chunk only.
    """

    has_text: bool
    done: bool
    error: str | None = None
    stats: ServerStats | None = None


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _has_text(obj: dict[str, Any]) -> bool:
    if _is_text(obj.get("response")) or _is_text(obj.get("thinking")):
        return True
    message = obj.get("message")
    return isinstance(message, dict) and (
        _is_text(message.get("content")) or _is_text(message.get("thinking"))
    )


def _stats(obj: dict[str, Any]) -> ServerStats:
    values: dict[str, Any] = {}
    for wire_name, field in _STAT_FIELDS.items():
        raw = obj.get(wire_name, 0)
        # bool is an int subclass; a count of `true` is not a count.
        if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
            raise InvalidLine(f"done chunk field {wire_name!r} is not a non-negative integer")
        values[field] = raw
    reason = obj.get("done_reason")
    values["done_reason"] = reason if isinstance(reason, str) else None
    return ServerStats(**values)


def parse_chunk(line: bytes) -> Chunk | None:
    """Parse one line; ``None`` for a blank line, ``InvalidLine`` for anything unexpected."""
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidLine(f"not JSON: {_preview(line)}") from err
    if not isinstance(obj, dict):
        raise InvalidLine(f"not a JSON object: {_preview(line)}")
    if "error" in obj:
        error = obj["error"]
        return Chunk(
            has_text=False, done=False, error=error if isinstance(error, str) else str(error)
        )
    done = obj.get("done")
    if not isinstance(done, bool):
        raise InvalidLine(f"no boolean 'done' field: {_preview(line)}")
    return Chunk(has_text=_has_text(obj), done=done, stats=_stats(obj) if done else None)


def _preview(line: bytes, limit: int = 120) -> str:
    text = line[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(line) > limit else "")
