"""What every wire decoder shares: the events it yields, and bounded steps from bytes to JSON.

A decoder turns the raw body of one answer into ``Chunk`` events (text arrived, answer text
arrived, the final counts, an error) and knows nothing of time: the prober stamps each
read's arrival and hands the events to the timeline, whatever the wire format. One decoder
per wire format (``stream.py`` for Ollama's NDJSON, ``sse.py`` for OpenAI's server-sent
events) and one for an answer that is not streamed (``WholeBody``).

Everything a server sends is bounded before it is held or decoded: a line (or a whole body)
by ``MAX_LINE_BYTES``, the objects ``json.loads`` builds from one line by counting its
brackets and quotes first, numbers by what a generation can plausibly report.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from exporter.result import NS_PER_S, ServerStats, shorten

# The longest line accepted. Only the done chunk of /api/generate is ever long: its
# ``context`` holds the prompt's and the answer's token ids, about 7 bytes each, so 4 MiB is
# a context of some 600k tokens, far beyond any probe's prompt plus ``max_tokens``.
MAX_LINE_BYTES = 4 * 1024 * 1024

# ``json.loads`` turns each ``{}`` (3 bytes) into a 64-byte dict: a line of them would grow
# 25-fold in memory. Answers hold a handful of objects and strings, so a long line with more
# than these is refused before it is decoded; what remains (integers) grows about 6-fold.
_CHECKED_LINE_BYTES = 64 * 1024
MAX_CONTAINERS = 10_000
MAX_QUOTES = 20_000

# Sane bounds for reported numbers: a count of tokens, or a duration of 30 days.
MAX_COUNT = 10_000_000
MAX_DURATION_NS = 30 * 86_400 * NS_PER_S
DONE_REASON_MAX = 64


class InvalidLine(ValueError):
    """Bytes that are not what the wire format sends; the probe fails as invalid_response."""


class LineTooLong(InvalidLine):
    """A line longer than the cap: refuse it rather than buffer without bound."""


class EndedEarly(Exception):
    """The answer ended in a well-formed way but without its final counts: ``truncated``."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One event of an answer, whatever the wire format.

    ``has_text``: generated text arrived, thinking included (whitespace is text).
    ``has_content``: *answer* text arrived, thinking excluded. ``done``: the answer is
    complete, and ``stats`` holds its final counts. ``error``: the server reported an
    error inside a successful response.
    """

    has_text: bool
    done: bool
    error: str | None = None
    stats: ServerStats | None = None
    has_content: bool = False


# The events of lines that are not final, made once: ``Chunk`` is immutable, and a stream is
# hundreds of these, so each line that carries no counts reuses one instead of building one.
NOTHING = Chunk(has_text=False, done=False)
THINKING = Chunk(has_text=True, done=False)
CONTENT = Chunk(has_text=True, done=False, has_content=True)


def text_event(has_text: bool, has_content: bool) -> Chunk:
    """The shared event of a line that is not final: no text, thinking, or answer text."""
    return CONTENT if has_content else THINKING if has_text else NOTHING


def blank(line: bytes) -> bool:
    """Empty or whitespace only (``\r`` of a CRLF included), without copying the line."""
    return not line or line.isspace()


class Decoder(Protocol):
    """Raw body bytes in, events out; ``None`` for a line that carries no event.

    One item per line, so the prober can hand the event loop back every few dozen lines
    however little they hold.
    """

    def feed(self, data: bytes) -> Iterator[Chunk | None]:
        """The events of one read, parsed lazily (the bytes themselves are taken at once)."""
        ...

    def finish(self) -> Iterator[Chunk | None]:
        """The events of what is left when the body ends."""
        ...


class LineSplitter:
    """Splits a byte stream into non-empty ``\\n``-terminated lines, carrying partial lines over.

    Each read is searched once, in C (``bytes.split``), so a multi-megabyte line arriving in
    many reads is not rescanned, and a flood of empty lines costs next to nothing. Splitting
    bytes on ``\\n`` is safe: byte 0x0A never occurs inside a multi-byte UTF-8 sequence.
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


class WholeBody:
    """An answer that is not streamed: one JSON document, parsed once the body has ended.

    It is held up to ``MAX_LINE_BYTES``, like a streamed line; ``parse`` turns it into the
    one event that carries both the text and the final counts.
    """

    def __init__(self, parse: Callable[[bytes], Chunk | None]) -> None:
        self._parse = parse
        self._body = bytearray()

    def feed(self, data: bytes) -> Iterator[Chunk | None]:
        if len(self._body) + len(data) > MAX_LINE_BYTES:
            raise LineTooLong(f"answer exceeds {MAX_LINE_BYTES} bytes")
        self._body += data
        return iter(())

    def finish(self) -> Iterator[Chunk | None]:
        yield self._parse(bytes(self._body))


def check_shape(line: bytes) -> None:
    """Refuse a long line whose decoding would build far more objects than answers hold."""
    if len(line) <= _CHECKED_LINE_BYTES:
        return
    containers = line.count(b"{") + line.count(b"[")
    if containers > MAX_CONTAINERS:
        raise InvalidLine(f"{containers} JSON objects or arrays in one {len(line)}-byte line")
    if line.count(b'"') > MAX_QUOTES:
        raise InvalidLine(f"more than {MAX_QUOTES // 2} strings in one {len(line)}-byte line")


def load_object(line: bytes) -> dict[str, Any]:
    """One JSON object from one line, within the bounds above; ``InvalidLine`` otherwise."""
    check_shape(line)
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as err:  # bad JSON or UTF-8, absurd nesting or digits
        raise InvalidLine(f"not JSON: {preview(line)}") from err
    if not isinstance(obj, dict):
        raise InvalidLine(f"not a JSON object: {preview(line)}")
    return obj


def bounded_int(obj: dict[str, Any], name: str, bound: int) -> int:
    """``obj[name]`` as a count or duration in 0..bound; missing is 0 (servers omit zeros).

    Integers only: bool is an int subclass (a count of ``true`` is not a count), and a float
    such as 1e20 would poison a counter for good.
    """
    raw = obj.get(name, 0)
    if type(raw) is not int or not 0 <= raw <= bound:
        raise InvalidLine(f"field {name!r} is not an integer 0..{bound}: {shorten(repr(raw), 40)}")
    return raw


def short_reason(value: Any) -> str | None:
    """A ``done_reason``/``finish_reason`` for logs: a string cut short, or None."""
    return shorten(value, DONE_REASON_MAX) if isinstance(value, str) else None


def is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def message_of(error: Any) -> str | None:
    """The message of an ``error`` field: a string (Ollama), or an object's ``message``
    (OpenAI-compatible servers); None for anything else."""
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return error if isinstance(error, str) else None


def error_text(error: Any) -> str:
    """The message of an in-stream error, or the error field itself as text."""
    message = message_of(error)
    return str(error) if message is None else message


def preview(line: bytes, limit: int = 120) -> str:
    text = line[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(line) > limit else "")
