"""Tests for exporter.simulator.validate: Ollama's request rules, without a server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporter.simulator import ModelScript
from exporter.simulator.validate import Reject, parse_generation, parse_openai, prompt_tokens

SCRIPTS = {
    "m:1b": ModelScript(tokens=10),
    "think:1b": ModelScript(tokens=10, thinking_tokens=3),
    "ctx": ModelScript(context_tokens=5),
}


def parse(body: Any, endpoint: str = "generate") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_generation(endpoint, raw, SCRIPTS.get)  # type: ignore[arg-type]  # str endpoint


def rejected(body: Any, endpoint: str = "generate") -> tuple[int, str]:
    with pytest.raises(Reject) as info:
        parse(body, endpoint)
    return info.value.status, info.value.message


class TestParseGeneration:
    @pytest.mark.parametrize(
        ("num_predict", "tokens", "reason"),
        [
            (None, 10, "stop"),
            (4, 4, "length"),
            (10, 10, "stop"),
            (99, 10, "stop"),
            (-1, 10, "stop"),
        ],
    )
    def test_num_predict_caps_tokens(
        self, num_predict: int | None, tokens: int, reason: str
    ) -> None:
        """num_predict below the model's length caps it and makes done_reason "length"."""
        options = {} if num_predict is None else {"num_predict": num_predict}
        gen = parse({"model": "m:1b", "prompt": "x", "options": options})
        assert (tokens, reason) == (gen.tokens, gen.done_reason)

    def test_wrong_num_predict_type_is_500(self) -> None:
        """Ollama answers a wrongly typed option with 500, not 400."""
        body = {"model": "m:1b", "prompt": "x", "options": {"num_predict": "10"}}
        assert rejected(body) == (500, 'option "num_predict" must be of type integer')

    @pytest.mark.parametrize(
        ("stream", "expected"), [(None, True), (True, True), (False, False), ("missing", True)]
    )
    def test_stream_defaults_to_true(self, stream: object, expected: bool) -> None:
        """Only an explicit false disables streaming; missing and null stream."""
        body: dict[str, Any] = {"model": "m:1b", "prompt": "x"}
        if stream != "missing":
            body["stream"] = stream
        assert expected == parse(body).stream

    @pytest.mark.parametrize(
        ("think", "thinking"), [("missing", 3), (None, 3), (True, 3), ("high", 3), (False, 0)]
    )
    def test_think_on_a_thinking_model(self, think: object, thinking: int) -> None:
        """Omitted think turns thinking on for a thinking model; think:false turns it off."""
        body: dict[str, Any] = {"model": "think:1b", "prompt": "x"}
        if think != "missing":
            body["think"] = think
        assert thinking == parse(body).thinking

    def test_thinking_is_capped_by_num_predict(self) -> None:
        """A small num_predict can end inside the thinking part."""
        gen = parse({"model": "think:1b", "prompt": "x", "options": {"num_predict": 2}})
        assert (gen.tokens, gen.thinking, gen.done_reason) == (2, 2, "length")

    def test_think_true_on_a_non_thinking_model_is_400(self) -> None:
        """Asking a model without the thinking capability to think is a 400."""
        assert rejected({"model": "m:1b", "prompt": "x", "think": True}) == (
            400,
            '"m:1b" does not support thinking',
        )

    def test_invalid_think_value_is_400(self) -> None:
        """A think string other than a level is a 400."""
        status, message = rejected({"model": "think:1b", "prompt": "x", "think": "lots"})
        assert status == 400
        assert message.startswith('invalid think value: "lots"')

    @pytest.mark.parametrize(
        ("body", "status", "message"),
        [
            (b"", 400, "missing request body"),
            ({"prompt": "x"}, 400, "model is required"),
            ({"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
            ([1], 400, "json: cannot unmarshal array into Go value of type api.GenerateRequest"),
        ],
    )
    def test_request_errors(self, body: Any, status: int, message: str) -> None:
        """Missing body, missing model, unknown model and a non-object body are refused."""
        assert (status, message) == rejected(body)

    def test_bad_json_is_400(self) -> None:
        """A body that is not JSON is a 400."""
        status, message = rejected(b'{"model":')
        assert status == 400
        assert message.startswith("invalid JSON")

    @pytest.mark.parametrize(
        ("endpoint", "body", "reason"),
        [
            ("generate", {"model": "m:1b"}, "load"),
            ("generate", {"model": "m:1b", "prompt": ""}, "load"),
            ("generate", {"model": "m:1b", "keep_alive": 0}, "unload"),
            ("chat", {"model": "m:1b"}, "load"),
            ("chat", {"model": "m:1b", "messages": []}, "load"),
        ],
    )
    def test_empty_prompt_is_load_only(self, endpoint: str, body: Any, reason: str) -> None:
        """An empty prompt or no messages only loads (or, with keep_alive 0, unloads)."""
        gen = parse(body, endpoint)
        assert (True, reason) == (gen.load_only, gen.done_reason)

    def test_context_only_for_generate_when_scripted_and_not_raw(self) -> None:
        """The context array is a generate-only field, and raw requests have none."""
        assert parse({"model": "ctx", "prompt": "x"}).context
        assert not parse({"model": "ctx", "prompt": "x", "raw": True}).context
        assert not parse({"model": "ctx", "messages": [{}]}, "chat").context
        assert not parse({"model": "m:1b", "prompt": "x"}).context


class TestKeepAlive:
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            (None, None),
            (0, 0.0),
            ("0", 0.0),
            ("-0", 0.0),
            (30, 30.0),
            (-1, -1.0),
            ("5m", 300.0),
            ("1h30m", 5400.0),
            ("1.5s", 1.5),
            ("300ms", 0.3),
            ("-1m", -60.0),
        ],
    )
    def test_parsed_like_go_durations(self, value: object, seconds: float | None) -> None:
        """keep_alive is seconds as a number, or a Go duration string."""
        body = {"model": "m:1b", "prompt": "x", "keep_alive": value}
        assert parse(body).keep_alive == seconds

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("300", 'time: missing unit in duration "300"'),
            ("soon", 'time: invalid duration "soon"'),
        ],
    )
    def test_bad_duration_is_400(self, value: str, message: str) -> None:
        """A duration Go cannot parse is refused with its error text."""
        assert rejected({"model": "m:1b", "prompt": "x", "keep_alive": value}) == (400, message)

    def test_zero_keep_alive_with_empty_prompt_unloads(self) -> None:
        """An empty prompt with keep_alive "0s" is an unload request."""
        gen = parse({"model": "m:1b", "keep_alive": "0s"})
        assert (gen.load_only, gen.done_reason) == (True, "unload")


class TestPromptTokens:
    @pytest.mark.parametrize(("chars", "tokens"), [(0, 1), (1, 1), (4, 1), (5, 2), (400, 100)])
    def test_about_four_characters_per_token(self, chars: int, tokens: int) -> None:
        """The approximation rounds up and never reports fewer than one token."""
        assert tokens == prompt_tokens(chars)

    def test_openai_content_parts_count(self) -> None:
        """Text parts of an OpenAI message count like plain string content."""
        parts = [{"type": "text", "text": "x" * 40}, {"type": "text", "text": "y" * 40}]
        body = {"model": "m:1b", "messages": [{"role": "user", "content": parts}]}
        assert parse_openai(json.dumps(body).encode(), SCRIPTS.get).prompt_tokens == 20


class TestParseOpenai:
    def parse(self, body: dict[str, Any]) -> Any:
        full = {"model": "think:1b", "messages": [{"role": "user", "content": "hi"}], **body}
        return parse_openai(json.dumps(full).encode(), SCRIPTS.get)

    def test_defaults(self) -> None:
        """/v1 does not stream unless asked, and sends usage only when asked."""
        gen = self.parse({})
        assert (gen.api, gen.stream, gen.include_usage, gen.thinking) == ("openai", False, False, 3)

    def test_stream_with_usage(self) -> None:
        """stream and stream_options.include_usage are taken from the request."""
        gen = self.parse({"stream": True, "stream_options": {"include_usage": True}})
        assert (gen.stream, gen.include_usage) == (True, True)

    @pytest.mark.parametrize(
        ("fields", "thinking"),
        [({"reasoning_effort": "none"}, 0), ({"reasoning": {"effort": "low"}}, 3)],
    )
    def test_reasoning_maps_to_think(self, fields: dict[str, Any], thinking: int) -> None:
        """reasoning_effort (or reasoning.effort) none turns thinking off; a level keeps it."""
        assert thinking == self.parse(fields).thinking

    def test_max_tokens_is_num_predict(self) -> None:
        """max_tokens caps the output like num_predict."""
        gen = self.parse({"max_tokens": 4})
        assert (gen.tokens, gen.done_reason) == (4, "length")

    def test_empty_body_is_a_middleware_400(self) -> None:
        """An empty body fails in the middleware, before the native handler."""
        with pytest.raises(Reject) as info:
            parse_openai(b"", SCRIPTS.get)
        assert (info.value.status, info.value.middleware) == (400, True)
