"""The OpenAI decoder: server-sent events and chat.completion objects, built by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporter.ollama.decoding import Chunk, EndedEarly, InvalidLine
from exporter.ollama.sse import SseDecoder, parse_completion, whole_completion

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def delta(content: str = "", reasoning: str = "", finish: str | None = None) -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    if reasoning:
        message["reasoning"] = reasoning
    return {**HEAD, "choices": [{"index": 0, "delta": message, "finish_reason": finish}]}


USAGE = {**HEAD, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3,
                                          "total_tokens": 15}}  # fmt: skip


def event(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def decode(data: bytes, step: int | None = None) -> list[Chunk]:
    """Every event of ``data`` fed in reads of ``step`` bytes (all at once by default)."""
    decoder = SseDecoder()
    step = step or len(data)
    out = [c for i in range(0, len(data), step) for c in decoder.feed(data[i : i + step])]
    out += decoder.finish()
    return [c for c in out if c is not None]


class TestStream:
    def test_ollama_stream(self) -> None:
        """Text deltas, the finish chunk, usage and [DONE]: three texts, then the counts."""
        data = b"".join(
            [event(delta("Waves")), event(delta(" roll")), event(delta(" in")),
             event(delta(finish="length")), event(USAGE), DONE]
        )  # fmt: skip
        chunks = decode(data, step=7)
        assert [c.has_text for c in chunks] == [True, True, True, False, False, False]
        done = chunks[-1]
        assert done.done
        assert done.stats is not None
        assert (done.stats.eval_count, done.stats.prompt_eval_count) == (3, 12)
        assert (done.stats.done_reason, done.stats.timings) == ("length", False)
        assert (done.stats.eval_duration_ns, done.stats.load_duration_ns) == (0, 0)

    def test_reasoning_is_text_but_not_answer(self) -> None:
        """``reasoning`` (Ollama, vLLM) and ``reasoning_content`` (llama.cpp) are thinking."""
        vllm = {**HEAD, "choices": [{"index": 0, "delta": {"reasoning_content": "Hm"}}]}
        chunks = decode(event(delta(reasoning="Okay")) + event(vllm) + event(delta("A")))
        assert [(c.has_text, c.has_content) for c in chunks] == [
            (True, False), (True, False), (True, True)]  # fmt: skip

    def test_role_only_delta_and_comments_carry_nothing(self) -> None:
        """vLLM's first delta (role, empty content), comments and other fields are not text."""
        data = b": ping\n\nevent: message\nid: 7\nretry: 1000\n" + event(delta()) + b"\r\n"
        chunks = decode(data)
        assert [(c.has_text, c.done) for c in chunks] == [(False, False)]

    def test_crlf_lines_and_no_space_after_the_colon(self) -> None:
        """SSE allows CRLF line ends and ``data:`` without a space."""
        data = b"data:" + json.dumps(delta("x")).encode() + b"\r\n\r\n"
        data += b"data:" + json.dumps(USAGE).encode() + b"\r\n\r\ndata:[DONE]\r\n\r\n"
        chunks = decode(data)
        assert chunks[0].has_text
        assert chunks[-1].done

    def test_usage_on_the_last_text_chunk(self) -> None:
        """A server that puts usage on a chunk with choices: the text and the counts count."""
        both = {**delta("end", finish="stop"), "usage": USAGE["usage"]}
        chunks = decode(event(delta("a")) + event(both) + DONE)
        assert [c.has_text for c in chunks] == [True, True, False]
        assert chunks[-1].stats is not None
        assert chunks[-1].stats.eval_count == 3

    def test_done_without_newline_at_the_end(self) -> None:
        """A last ``data: [DONE]`` with the connection closed right after it still ends."""
        chunks = decode(event(delta("a")) + event(USAGE) + b"data: [DONE]")
        assert chunks[-1].done

    def test_done_without_usage_ended_early(self) -> None:
        """[DONE] with no usage: include_usage was ignored, the counts are missing."""
        with pytest.raises(EndedEarly, match="usage"):
            decode(event(delta("a")) + DONE)

    def test_no_done_yields_no_final_event(self) -> None:
        """Usage but no [DONE] before the end: no final event (the prober says truncated)."""
        chunks = decode(event(delta("a")) + event(USAGE))
        assert not any(c.done for c in chunks)

    @pytest.mark.parametrize(
        ("obj", "message"),
        [
            ({"error": {"message": "boom", "type": "api_error"}}, "boom"),
            ({"object": "error", "message": "vllm says no", "code": 500}, "vllm says no"),
            ({"error": "plain"}, "plain"),
        ],
    )
    def test_error_objects(self, obj: dict[str, Any], message: str) -> None:
        """An error object inside the stream, in OpenAI's or vLLM's shape."""
        [chunk] = decode(event(obj))
        assert chunk.error == message

    @pytest.mark.parametrize(
        "raw",
        [
            b"hello\n\n",
            b"data {}\n\n",
            b"data: {not json\n\n",
            b"data: [1,2]\n\n",
            b'data: {"choices": "x"}\n\n',
            b'data: {"choices": [{"delta": "x"}]}\n\n',
            b'data: {"id": 1}\n\n',
            b'data: {"choices": [], "usage": {"completion_tokens": -1}}\n\n',
            b'data: {"choices": [], "usage": {"completion_tokens": 1e30}}\n\n',
            b'data: {"choices": [], "usage": "many"}\n\n',
            b"data: " + b"[" * 5000 + b"]" * 5000 + b"\n\n",
            b'data: {"choices":[' + b"{}," * 30_000 + b"{}]}\n\n",
        ],
    )
    def test_invalid_events(self, raw: bytes) -> None:
        """Lines that are not SSE, data that is not a chunk object, absurd counts, costly JSON."""
        with pytest.raises(InvalidLine):
            decode(raw)


class TestCompletion:
    def test_completion(self) -> None:
        """A chat.completion: its text, its answer text and its usage, in one final event."""
        body = {**HEAD, "object": "chat.completion", "usage": USAGE["usage"],
                "choices": [{"index": 0, "finish_reason": "length",
                             "message": {"role": "assistant", "content": "Waves",
                                         "reasoning": "Okay"}}]}  # fmt: skip
        decoder = whole_completion()
        assert list(decoder.feed(json.dumps(body).encode() + b"\n")) == []
        [chunk] = decoder.finish()
        assert chunk is not None
        assert (chunk.has_text, chunk.has_content, chunk.done) == (True, True, True)
        assert chunk.stats is not None
        assert (chunk.stats.eval_count, chunk.stats.done_reason) == (3, "length")

    def test_completion_without_usage_ended_early(self) -> None:
        """No usage: the counts are missing."""
        body = {**HEAD, "choices": [{"message": {"content": "x"}}]}
        with pytest.raises(EndedEarly):
            parse_completion(json.dumps(body).encode())

    def test_error_body(self) -> None:
        """An error object with a 200."""
        chunk = parse_completion(b'{"error": {"message": "no"}}')
        assert chunk is not None
        assert chunk.error == "no"

    def test_empty_body_is_nothing(self) -> None:
        """An empty body yields no event (the prober says truncated)."""
        assert parse_completion(b"") is None
