"""The NDJSON splitter and chunk parser, on byte streams built by hand."""

from __future__ import annotations

import json

import pytest

from exporter.ollama.decoding import (
    MAX_COUNT,
    MAX_DURATION_NS,
    MAX_LINE_BYTES,
    InvalidLine,
    LineSplitter,
    LineTooLong,
)
from exporter.ollama.stream import NdjsonDecoder, parse_chunk, whole_answer

GEN = {"model": "m", "created_at": "2026-11-20T09:00:01Z", "response": "Hi", "done": False}
DONE = {
    "model": "m",
    "created_at": "2026-11-20T09:00:02Z",
    "response": "",
    "done": True,
    "done_reason": "length",
    "total_duration": 171204883,
    "load_duration": 3180442,
    "prompt_eval_count": 41,
    "prompt_eval_duration": 58120000,
    "eval_count": 15,
    "eval_duration": 104803000,
}


def line(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class TestLineSplitter:
    def test_lines_split_across_reads_are_joined(self) -> None:
        """A line cut in the middle by the transport comes out whole, once."""
        data = line(GEN) + line(DONE)
        splitter = LineSplitter()
        out: list[bytes] = []
        for i in range(0, len(data), 7):
            out += splitter.feed(data[i : i + 7])
        assert out == [line(GEN)[:-1], line(DONE)[:-1]]
        assert splitter.tail() == b""

    def test_unicode_line_separators_do_not_split(self) -> None:
        """U+0085, U+2028 and \\r inside a string stay inside their line (unlike splitlines)."""
        text = "a\u0085b\u2028c\rd"
        raw = b'{"response":"' + text.encode() + b'","done":false}\n'
        assert len(LineSplitter().feed(raw)) == 1
        assert len(raw.decode().splitlines()) > 1  # what a naive splitter would have done

    def test_partial_tail_is_kept(self) -> None:
        """Bytes after the last newline are the tail, not a line."""
        splitter = LineSplitter()
        assert splitter.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
        assert splitter.tail() == b'{"b"'

    def test_multi_megabyte_line_is_accepted(self) -> None:
        """A done line with a 2.7 MB context array parses (Go's 64 KiB scanner limit is a bug)."""
        big = dict(DONE, context=list(range(400_000)))
        data = line(big)
        assert len(data) > 2_000_000
        splitter = LineSplitter()
        lines: list[bytes] = []
        for i in range(0, len(data), 65536):
            lines += splitter.feed(data[i : i + 65536])
        assert len(lines) == 1
        chunk = parse_chunk(lines[0])
        assert chunk is not None
        assert chunk.done

    def test_line_over_cap_is_refused(self) -> None:
        """An endless line raises instead of buffering without bound."""
        splitter = LineSplitter(max_line_bytes=1000)
        splitter.feed(b"x" * 900)
        with pytest.raises(LineTooLong):
            splitter.feed(b"x" * 200)

    @pytest.mark.parametrize(
        "data",
        [b"x" * 1001 + b"\n", b"ok\n" + b"x" * 1001 + b"\nok\n", b"x" * 600 + b"\n" + b"y" * 1001],
    )
    def test_line_over_cap_within_one_read_is_refused(self, data: bytes) -> None:
        """A line longer than the cap is refused even when one read holds all of it."""
        with pytest.raises(LineTooLong):
            LineSplitter(max_line_bytes=1000).feed(data)

    def test_line_at_the_cap_is_accepted(self) -> None:
        """The cap itself is allowed, whether the line comes in one read or in two."""
        assert LineSplitter(max_line_bytes=10).feed(b"x" * 10 + b"\n") == [b"x" * 10]
        splitter = LineSplitter(max_line_bytes=10)
        assert splitter.feed(b"x" * 6) == []
        assert splitter.feed(b"x" * 4 + b"\n") == [b"x" * 10]

    def test_empty_lines_are_dropped(self) -> None:
        """A read of nothing but newlines yields no lines at all (cheaply, in C)."""
        splitter = LineSplitter()
        assert splitter.feed(b"\n" * 65536) == []
        assert splitter.feed(b'\n\n{"a":1}\n\n') == [b'{"a":1}']
        assert splitter.tail() == b""

    def test_the_cap_is_sane_for_a_done_chunk(self) -> None:
        """A few MiB: far above a real probe's done line, far below the memory limit."""
        assert 1024 * 1024 <= MAX_LINE_BYTES <= 8 * 1024 * 1024


class TestParseChunk:
    def test_text_chunk(self) -> None:
        """A generate chunk with a non-empty response has text and is not done."""
        chunk = parse_chunk(line(GEN))
        assert chunk is not None
        assert (chunk.has_text, chunk.done, chunk.error, chunk.stats) == (True, False, None, None)

    @pytest.mark.parametrize(
        "obj",
        [
            {"response": "", "thinking": "Okay", "done": False},
            {"message": {"role": "assistant", "content": "", "thinking": "Hmm"}, "done": False},
            {"message": {"role": "assistant", "content": "Waves"}, "done": False},
            {"response": "\n\n", "done": False},
        ],
    )
    def test_thinking_chat_and_whitespace_count_as_text(self, obj: dict[str, object]) -> None:
        """Thinking text, chat content and whitespace-only text are all generated text."""
        chunk = parse_chunk(line(obj))
        assert chunk is not None
        assert chunk.has_text

    @pytest.mark.parametrize(
        "obj",
        [
            {"response": "", "done": False},
            {"message": {"role": "assistant", "content": ""}, "done": False},
            {"response": None, "done": False},
        ],
    )
    def test_empty_chunks_have_no_text(self, obj: dict[str, object]) -> None:
        """Empty strings and nulls are not text."""
        chunk = parse_chunk(line(obj))
        assert chunk is not None
        assert not chunk.has_text

    def test_done_chunk_stats(self) -> None:
        """The done chunk carries the server's counters, in integer nanoseconds."""
        chunk = parse_chunk(line(DONE))
        assert chunk is not None
        assert chunk.done
        assert chunk.stats is not None
        s = chunk.stats
        assert (s.eval_count, s.eval_duration_ns, s.prompt_eval_count) == (15, 104803000, 41)
        assert (s.prompt_eval_duration_ns, s.load_duration_ns) == (58120000, 3180442)
        assert (s.total_duration_ns, s.done_reason) == (171204883, "length")

    def test_missing_metrics_are_zero(self) -> None:
        """Ollama omits zero metrics, so a bare done chunk has all-zero stats."""
        chunk = parse_chunk(line({"response": "", "done": True}))
        assert chunk is not None
        assert chunk.stats is not None
        assert chunk.stats.eval_count == 0
        assert chunk.stats.done_reason is None

    def test_error_line(self) -> None:
        """A mid-stream {"error": …} line is an error chunk, whatever else it holds."""
        chunk = parse_chunk(line({"error": "an error was encountered while running the model"}))
        assert chunk is not None
        assert chunk.error == "an error was encountered while running the model"

    def test_blank_line_is_skipped(self) -> None:
        """Blank lines (and a trailing CR) are not chunks."""
        assert parse_chunk(b"") is None
        assert parse_chunk(b"\r") is None

    @pytest.mark.parametrize(
        "raw",
        [
            b'{"model":"m","respo',
            b"[1,2]",
            b'{"response":"x"}',
            b'{"response":"x","done":"false"}',
            b'{"done":true,"eval_count":"15"}',
            b'{"done":true,"eval_count":-1}',
            b'{"done":true,"eval_count":true}',
            b"\xff\xfe",
            b"[" * 5000 + b"]" * 5000,  # deeper than the decoder's recursion limit
            b'{"done":true,"eval_count":1' + b"0" * 5000 + b"}",  # too many digits for int()
        ],
    )
    def test_invalid_lines_raise(self, raw: bytes) -> None:
        """Anything but a JSON object with a boolean done (and integer stats) is invalid."""
        with pytest.raises(InvalidLine):
            parse_chunk(raw)

    @pytest.mark.parametrize(
        "value",
        ["1" + "0" * 400, "1e20", "100000000000000000000", "15.0", "NaN", "Infinity", "-1"],
    )
    @pytest.mark.parametrize("field", ["eval_count", "prompt_eval_count", "eval_duration"])
    def test_absurd_numbers_in_the_done_chunk_are_invalid(self, field: str, value: str) -> None:
        """Counts and durations are integers within sane bounds, or the chunk is invalid."""
        with pytest.raises(InvalidLine, match=field):
            parse_chunk(b'{"done":true,"%s":%s}' % (field.encode(), value.encode()))

    @pytest.mark.parametrize(
        ("field", "bound"),
        [
            ("eval_count", MAX_COUNT),
            ("prompt_eval_count", MAX_COUNT),
            ("eval_duration", MAX_DURATION_NS),
            ("prompt_eval_duration", MAX_DURATION_NS),
            ("load_duration", MAX_DURATION_NS),
            ("total_duration", MAX_DURATION_NS),
        ],
    )
    def test_bounds_are_inclusive(self, field: str, bound: int) -> None:
        """The largest sane value is accepted, one more is not."""
        assert parse_chunk(b'{"done":true,"%s":%d}' % (field.encode(), bound)) is not None
        with pytest.raises(InvalidLine):
            parse_chunk(b'{"done":true,"%s":%d}' % (field.encode(), bound + 1))

    def test_long_done_reason_is_cut(self) -> None:
        """``done_reason`` is server text that reaches logs: it is kept short."""
        chunk = parse_chunk(line({"done": True, "done_reason": "x" * 100_000}))
        assert chunk is not None
        assert chunk.stats is not None
        assert chunk.stats.done_reason is not None
        assert len(chunk.stats.done_reason.encode()) <= 64

    @pytest.mark.parametrize(
        "raw",
        [
            b'{"done":true,"context":[' + b"{}," * 30_000 + b'{}],"response":""}',
            b'{"done":true,"context":[' + b"[]," * 30_000 + b'[]],"response":""}',
            b'{"done":true,"context":[' + b'"",' * 30_000 + b'""],"response":""}',
        ],
    )
    def test_long_line_of_costly_items_is_refused_before_decoding(self, raw: bytes) -> None:
        """A long line with far more objects, arrays or strings than Ollama sends would
        decode to many times its size: it is refused unread."""
        with pytest.raises(InvalidLine, match="in one"):
            parse_chunk(raw)


class TestAnswerText:
    @pytest.mark.parametrize(
        ("obj", "content"),
        [
            ({"response": "Waves", "done": False}, True),
            ({"message": {"role": "assistant", "content": " roll"}, "done": False}, True),
            ({"response": "", "thinking": "Okay", "done": False}, False),
            (
                {"message": {"role": "assistant", "content": "", "thinking": "Hm"}, "done": False},
                False,
            ),
            ({"message": {"content": "A", "thinking": "B"}, "done": False}, True),
        ],
    )
    def test_answer_text_is_told_from_thinking(self, obj: dict[str, object], content: bool) -> None:
        """Thinking is text but not answer text; a chunk holding both has answer text."""
        chunk = parse_chunk(line(obj))
        assert chunk is not None
        assert chunk.has_text
        assert chunk.has_content is content


class TestDecoders:
    def test_ndjson_decoder_yields_one_item_per_line(self) -> None:
        """Every non-empty line is one item, parsed; a tail without newline counts at the end."""
        decoder = NdjsonDecoder()
        first = list(decoder.feed(line(GEN) + line(GEN)[:-1]))
        assert [c is not None and c.has_text for c in first] == [True]
        rest = list(decoder.feed(b"\n" + line(DONE)[:-1]))
        assert [c is not None and c.has_text for c in rest] == [True]
        [done] = decoder.finish()
        assert done is not None
        assert done.done

    def test_ndjson_decoder_drops_a_cut_tail(self) -> None:
        """A partial last line is a stream cut short (the prober says truncated), not a bad line."""
        decoder = NdjsonDecoder()
        list(decoder.feed(line(GEN) + b'{"model":"m","resp'))
        assert list(decoder.finish()) == []

    def test_whole_answer_is_parsed_at_the_end(self) -> None:
        """stream: false: nothing until the body ends, then the one done object."""
        decoder = whole_answer()
        body = json.dumps(dict(DONE, response="Waves roll")).encode()
        assert list(decoder.feed(body[:10])) == []
        assert list(decoder.feed(body[10:])) == []
        [chunk] = decoder.finish()
        assert chunk is not None
        assert (chunk.has_text, chunk.has_content, chunk.done) == (True, True, True)
        assert chunk.stats is not None
        assert chunk.stats.eval_count == 15

    def test_whole_answer_is_bounded(self) -> None:
        """A body beyond the line cap is refused before it is held."""
        decoder = whole_answer()
        list(decoder.feed(b"x" * MAX_LINE_BYTES))
        with pytest.raises(LineTooLong):
            list(decoder.feed(b"x"))

    def test_whole_answer_that_is_not_json_is_invalid(self) -> None:
        """A non-streamed body is one JSON object or invalid."""
        decoder = whole_answer()
        list(decoder.feed(b"<html>busy</html>"))
        with pytest.raises(InvalidLine):
            list(decoder.finish())
