"""Log lines: one per event in both formats, with server-controlled text never written raw."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from exporter.logs import FORMATS, setup_logging

# What a hostile or broken server can put into an error message that ends up in a log field.
CONTROL_CHARS = [chr(c) for c in (*range(0x20), 0x7F, 0x9B)]
RAW_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
FORGED = "\x1b[2Jclear\rlevel=error msg=forged\nsecond line"


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing to a buffer; the root logger is put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    setup_logging("debug", "logfmt", stream)
    yield logging.getLogger("exporter.test"), stream
    root.handlers[:] = handlers
    root.setLevel(level)


def _one_line(stream: io.StringIO) -> str:
    text = stream.getvalue()
    assert text.count("\n") == 1, text
    assert text.endswith("\n")
    return text[:-1]


def _logfmt_value(line: str, key: str) -> str:
    """The text of ``key``'s value: bare, or a quoted JSON string literal."""
    match = re.search(rf' {key}=("(?:[^"\\]|\\.)*"|\S*)', line)
    assert match is not None, line
    raw = match.group(1)
    return str(json.loads(raw)) if raw.startswith('"') else raw


@pytest.mark.parametrize("char", CONTROL_CHARS, ids=lambda c: f"0x{ord(c):02x}")
def test_logfmt_escapes_every_control_character(
    log: tuple[logging.Logger, io.StringIO], char: str
) -> None:
    """Any char < 0x20, DEL or a C1 control is escaped, the value quoted, and nothing lost."""
    logger, stream = log
    detail = f"before{char}after"
    logger.warning(f"m{char}", extra={"fields": {"detail": detail}})
    line = _one_line(stream)
    assert RAW_CONTROL.search(line) is None, repr(line)
    assert _logfmt_value(line, "detail") == detail
    assert _logfmt_value(line, "msg") == f"m{char}"


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_forged_line_stays_one_escaped_line(
    log: tuple[logging.Logger, io.StringIO], fmt: str
) -> None:
    """A terminal-clearing, line-forging error message is one line with no raw control char."""
    logger, stream = log
    setup_logging("debug", fmt, stream)
    logger.warning("probe failed", extra={"fields": {"detail": FORGED}})
    line = _one_line(stream)
    assert RAW_CONTROL.search(line) is None, repr(line)
    if fmt == "json":
        assert json.loads(line)["detail"] == FORGED
    else:
        assert _logfmt_value(line, "detail") == FORGED
        assert " level=warning " in line


def test_logfmt_quotes_only_when_needed(log: tuple[logging.Logger, io.StringIO]) -> None:
    """Plain values stay bare, spaces and '=' are quoted, non-ASCII text stays readable."""
    logger, stream = log
    fields = {"a": "plain", "b": "two words", "c": "k=v", "d": "", "e": "模型:7b", "f": 3}
    logger.info("x", extra={"fields": fields})
    line = _one_line(stream)
    assert line.endswith(' a=plain b="two words" c="k=v" d="" e=模型:7b f=3')


def test_exception_text_is_escaped(log: tuple[logging.Logger, io.StringIO]) -> None:
    """A traceback (multi-line, maybe quoting server text) is one escaped value."""
    logger, stream = log
    try:
        raise RuntimeError(FORGED)
    except RuntimeError:
        logger.exception("failed")
    line = _one_line(stream)
    assert RAW_CONTROL.search(line) is None, repr(line)
    assert FORGED in _logfmt_value(line, "exc")


def test_text_is_another_name_for_logfmt(log: tuple[logging.Logger, io.StringIO]) -> None:
    """`--log.format text` and `--log.format logfmt` write the same line."""
    logger, stream = log
    lines = []
    for fmt in ("text", "logfmt"):
        assert fmt in FORMATS
        stream.seek(0)
        stream.truncate()
        setup_logging("info", fmt, stream)
        logger.info("same", extra={"fields": {"k": "v w"}})
        lines.append(_one_line(stream).split(" ", 1)[1])  # without the timestamp
    assert lines[0] == lines[1]
    assert lines[0] == 'level=info logger=exporter.test msg=same k="v w"'
