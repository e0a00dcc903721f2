"""A fast reader of the exporter's own text exposition, for tests that read it many times.

prometheus-client's parser reads a character at a time: about 0.2 s for the few thousand
samples of a busy test daemon, which a test that checks the series after each of fifty
reloads would spend on its event loop fifty times. The exporter writes one sample per line,
``name{label="value",...} value``, with values escaped as prometheus-client escapes them;
this reads exactly that and refuses any other line, so a torn or malformed exposition still
fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group()], value)


@lru_cache(maxsize=65536)
def _label_items(text: str) -> tuple[tuple[str, str], ...] | None:
    """The label pairs of one ``{...}`` body, or None if it is malformed. Cached: a test that
    scrapes many times reads the same few thousand label sets again and again."""
    items: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _LABEL.match(text, pos)
        if match is None:
            return None
        items.append((match.group(1), _unescape(match.group(2))))
        pos = match.end()
    return tuple(items)


def _labels(text: str, line: str) -> dict[str, str]:
    items = _label_items(text)
    if items is None:
        raise ValueError(f"malformed labels: {line!r}")
    return dict(items)


def samples(exposition: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """Every sample of a text exposition (format 0.0.4) as (name, labels, value);
    ``ValueError`` for a line that is neither a sample nor a comment."""
    for line in exposition.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.fullmatch(line)
        if match is None:
            raise ValueError(f"malformed sample line: {line!r}")
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"malformed sample value: {line!r}") from None
        yield name, _labels(labels or "", line), number
