"""Durations as people write them in YAML and env: ``500ms``, ``30s``, ``5m``, ``1h`` or seconds.

pydantic's ``timedelta`` accepts only numbers and ISO 8601 (``PT30S``), which nobody writes in a
config file, so durations get this small parser and are stored as plain ``float`` seconds (the
unit the scheduler and ``asyncio.timeout`` want). They are capped at 30 days: a typo such as
``99999999999999h`` must fail here, not as an ``OverflowError`` in the scheduler later.
"""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# A sign is accepted so that "-5s" is reported as "must be > 0" rather than as unparseable.
_DURATION_RE = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(ms|s|m|h)?")
_HINT = "use a number of seconds or <number>ms|s|m|h"
MAX_DURATION_S = 30 * 24 * 3600.0


def parse_duration(value: object) -> float:
    """Return ``value`` as float seconds; raise ``ValueError`` unless 0 < duration <= 30 days.

    Booleans are refused although ``True`` is an ``int``: YAML 1.1 reads ``interval: on`` as
    ``True``, and that must not silently mean one second.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"invalid duration '{value}': {_HINT}")
    if isinstance(value, str):
        match = _DURATION_RE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"invalid duration '{value}': {_HINT}")
        number, unit = match.groups()
        seconds = float(number) * _UNIT_SECONDS[unit or "s"]
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration '{value}': {_HINT}")
    if seconds <= 0:
        raise ValueError(f"duration must be > 0, got '{value}'")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"duration must be at most 720h (30 days), got '{value}'")
    return seconds


def format_duration(seconds: float) -> str:
    """Render float seconds in the shortest form ``parse_duration`` reads back (for summaries)."""
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    millis = seconds * 1000
    if seconds < 1 and abs(millis - round(millis)) < 1e-9:
        return f"{round(millis)}ms"
    return f"{seconds:g}s"
