"""Log setup: ``--log.level`` and ``--log.format logfmt|json``, one line per event.

Structured fields travel in ``extra={"fields": {...}}`` so both formats render them: logfmt as
``key=value`` pairs (values quoted when needed), json as top-level keys. ``text`` is accepted
as another name for logfmt.

Log values carry text an Ollama server or a proxy chose (error messages, model names), so no
format writes a control character raw: one could clear a terminal, rewrite the line it sits on
(``\r``) or forge a second log line (``\n``). Both formats escape them as JSON does.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, TextIO

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("logfmt", "text", "json")
# C0 controls, DEL and C1 controls (8-bit terminals read 0x9b as the start of an escape sequence).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NEEDS_QUOTES = re.compile(r'[\s"=]|[\x00-\x1f\x7f-\x9f]')


def _timestamp(record: logging.LogRecord) -> str:
    ms = int(record.msecs)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{ms:03d}Z"


def _entry(record: logging.LogRecord) -> dict[str, Any]:
    """What both formats write: time, level, logger, message, then the structured fields."""
    fields = getattr(record, "fields", None)
    return {
        "ts": _timestamp(record),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
        **(fields if isinstance(fields, dict) else {}),
    }


def _escape(text: str) -> str:
    """``text`` as a JSON string literal: quoted, control characters as ``\\n``/``\\u001b``.

    Other non-ASCII characters stay as they are, so a model name in Chinese stays readable.
    """
    quoted = json.dumps(text, ensure_ascii=False)
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _quote(value: Any) -> str:
    """A logfmt value: bare when that is unambiguous, else quoted and escaped."""
    text = str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        return _escape(text)
    return text


class TextFormatter(logging.Formatter):
    """logfmt: ``ts=… level=… logger=… msg="…" key=value …`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line = " ".join(f"{k}={_quote(v)}" for k, v in _entry(record).items())
        if record.exc_info:
            line += " exc=" + _escape(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        obj = _entry(record)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


def setup_logging(level: str = "info", fmt: str = "logfmt", stream: TextIO | None = None) -> None:
    """Configure the root logger; quiet the libraries that log per request.

    ``fmt`` is one of ``FORMATS``: ``json``, or ``logfmt`` (also called ``text``).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    for noisy in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(LEVELS[level], logging.WARNING))
