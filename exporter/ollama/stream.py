"""Ollama's NDJSON stream, from raw bytes to typed chunks: pure code, no I/O, no clock.

Why hand-written: httpx's ``aiter_lines()`` splits like ``str.splitlines()``, on U+0085,
U+2028 and friends too, and Go's JSON encoder leaves U+0085 raw inside strings, so model
text containing NEL would cut a chunk in two. Byte 0x0A never occurs inside a multi-byte
UTF-8 sequence, so splitting bytes on ``b"\\n"`` is always safe. Lines can arrive split
across reads, and the final generate line (with its ``context`` array) can be megabytes.

Everything a server sends is bounded before it is held or decoded: a line by
``MAX_LINE_BYTES``, the objects ``json.loads`` builds from one line by counting its brackets
and quotes first, and the done chunk's numbers by what a generation can plausibly report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from exporter.result import NS_PER_S, ServerStats, shorten

# The longest line accepted. Only the done chunk of /api/generate is ever long: its
# ``context`` holds the prompt's and the answer's token ids, about 7 bytes each, so 4 MiB is
# a context of some 600k tokens, far beyond any probe's prompt plus ``max_tokens``.
MAX_LINE_BYTES = 4 * 1024 * 1024

# ``json.loads`` turns each ``{}`` (3 bytes) into a 64-byte dict: a line of them would grow
# 25-fold in memory. Ollama's chunks hold a handful of objects and strings, so a long line with
# more than these is refused before it is decoded; what remains (integers) grows about 6-fold.
_CHECKED_LINE_BYTES = 64 * 1024
MAX_CONTAINERS = 10_000
MAX_QUOTES = 20_000

# Sane bounds for the done chunk: a count of tokens, or a duration of 30 days.
MAX_COUNT = 10_000_000
MAX_DURATION_NS = 30 * 86_400 * NS_PER_S
DONE_REASON_MAX = 64

# Fields of the done chunk: wire name → (ServerStats field, largest accepted value).
_STAT_FIELDS = {
    "eval_count": ("eval_count", MAX_COUNT),
    "eval_duration": ("eval_duration_ns", MAX_DURATION_NS),
    "prompt_eval_count": ("prompt_eval_count", MAX_COUNT),
    "prompt_eval_duration": ("prompt_eval_duration_ns", MAX_DURATION_NS),
    "load_duration": ("load_duration_ns", MAX_DURATION_NS),
    "total_duration": ("total_duration_ns", MAX_DURATION_NS),
}


class InvalidLine(ValueError):
    """A line that is not the JSON chunk Ollama sends; the probe fails as invalid_response."""


class LineTooLong(InvalidLine):
    """A line longer than the cap: refuse it rather than buffer without bound."""


class LineSplitter:
    """Splits a byte stream into non-empty ``\\n``-terminated lines, carrying partial lines over.

    Each read is searched once, in C (``bytes.split``), so a multi-megabyte line arriving in
    many reads is not rescanned, and a flood of empty lines costs next to nothing.
    """

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_line_bytes

    def feed(self, data: bytes) -> list[bytes]:
        """Add one read; return the complete non-empty lines it finished (without ``\\n``)."""
        last = data.rfind(b"\n")
        if last < 0:
            self._grow(data)
            return []
        lines = data[:last].split(b"\n")
        if self._buf:
            self._grow(lines[0])
            lines[0] = bytes(self._buf)
            self._buf.clear()
        if len(data) > self._max and max(map(len, lines)) > self._max:
            raise LineTooLong(f"line exceeds {self._max} bytes")
        self._grow(data[last + 1 :])
        return list(filter(None, lines))  # in C: a flood of empty lines stays cheap

    def _grow(self, data: bytes) -> None:
        if len(self._buf) + len(data) > self._max:
            raise LineTooLong(f"line exceeds {self._max} bytes without a newline")
        self._buf += data

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
    for wire_name, (field, bound) in _STAT_FIELDS.items():
        raw = obj.get(wire_name, 0)
        # Integers only: bool is an int subclass (a count of `true` is not a count), and a
        # float such as 1e20 would poison a counter for good.
        if type(raw) is not int or not 0 <= raw <= bound:
            shown = shorten(repr(raw), 40)
            raise InvalidLine(
                f"done chunk field {wire_name!r} is not an integer 0..{bound}: {shown}"
            )
        values[field] = raw
    reason = obj.get("done_reason")
    values["done_reason"] = shorten(reason, DONE_REASON_MAX) if isinstance(reason, str) else None
    return ServerStats(**values)


def _check_shape(line: bytes) -> None:
    """Refuse a long line whose decoding would build far more objects than Ollama sends."""
    if len(line) <= _CHECKED_LINE_BYTES:
        return
    containers = line.count(b"{") + line.count(b"[")
    if containers > MAX_CONTAINERS:
        raise InvalidLine(f"{containers} JSON objects or arrays in one {len(line)}-byte line")
    if line.count(b'"') > MAX_QUOTES:
        raise InvalidLine(f"more than {MAX_QUOTES // 2} strings in one {len(line)}-byte line")


def parse_chunk(line: bytes) -> Chunk | None:
    """Parse one line; ``None`` for a blank line, ``InvalidLine`` for anything unexpected."""
    if not line.strip():
        return None
    _check_shape(line)
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as err:  # bad JSON or UTF-8, absurd nesting or digits
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
