"""The request bodies of each API and the sized prompt, from profiles built like the config's."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.config import ProbeProfile
from exporter.ollama.payload import decoder_for, request_body
from exporter.ollama.prompt import CHARS_PER_TOKEN, FILLER, build_prompt, new_nonce
from exporter.ollama.sse import SseDecoder
from exporter.ollama.stream import NdjsonDecoder


def profile(**fields: Any) -> ProbeProfile:
    return ProbeProfile(name="p", **fields)


class TestNative:
    def test_generate(self) -> None:
        """The default profile: prompt behind the nonce, streaming, options with num_predict,
        and neither think nor keep_alive."""
        body = request_body(profile(), "m", "abcd1234")
        assert body == {
            "model": "m",
            "prompt": "[abcd1234] Tell a long story about the sea.",
            "stream": True,
            "options": {"temperature": 0, "seed": 42, "num_predict": 64},
        }

    def test_chat_not_streamed_with_keep_alive(self) -> None:
        """stream: false and keep_alive are sent as written."""
        body = request_body(profile(api="chat", stream=False, keep_alive="10m"), "m", "n")
        assert body["messages"] == [
            {"role": "user", "content": "[n] Tell a long story about the sea."}
        ]
        assert (body["stream"], body["keep_alive"]) == (False, "10m")

    @pytest.mark.parametrize("keep_alive", [0, -1, 300, 1.5, "-1s"])
    def test_keep_alive_as_written(self, keep_alive: object) -> None:
        """A number stays a number of the same type; a string stays a string."""
        body = request_body(profile(keep_alive=keep_alive), "m", "n")
        assert body["keep_alive"] == keep_alive
        assert type(body["keep_alive"]) is type(keep_alive)


class TestOpenAI:
    def test_streamed_body(self) -> None:
        """max_tokens, include_usage, the options OpenAI has and no others, no keep_alive."""
        options = {"temperature": 0, "seed": 42, "top_p": 0.9, "num_ctx": 8192, "top_k": 4}
        body = request_body(profile(api="openai", options=options), "m", "n")
        assert body == {
            "model": "m",
            "messages": [{"role": "user", "content": "[n] Tell a long story about the sea."}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 64,
            "temperature": 0,
            "seed": 42,
            "top_p": 0.9,
        }

    @pytest.mark.parametrize(
        ("think", "effort"), [(False, "none"), ("low", "low"), ("high", "high"), (True, None)]
    )
    def test_think_as_reasoning_effort(self, think: object, effort: str | None) -> None:
        """think maps to reasoning_effort; true has no equivalent and is not sent."""
        body = request_body(profile(api="openai", think=think), "m", "n")
        assert body.get("reasoning_effort") == effort
        assert "think" not in body

    def test_not_streamed(self) -> None:
        """Without streaming there is no stream_options (usage is always in the answer)."""
        body = request_body(profile(api="openai", stream=False), "m", "n")
        assert body["stream"] is False
        assert "stream_options" not in body


class TestDecoderFor:
    def test_each_api_and_mode(self) -> None:
        """Each wire gets its decoder; an unstreamed answer is read whole."""
        assert isinstance(decoder_for(profile()), NdjsonDecoder)
        assert isinstance(decoder_for(profile(api="openai")), SseDecoder)
        for p in (profile(stream=False), profile(api="openai", stream=False)):
            decoder = decoder_for(p)
            assert list(decoder.feed(b'{"a":\n')) == []  # held, not split into lines


class TestPrompt:
    def test_nonce_first(self) -> None:
        """Every prompt starts with its nonce, and two nonces differ."""
        nonce = new_nonce()
        assert build_prompt(profile(), nonce).startswith(f"[{nonce}] ")
        assert new_nonce() != new_nonce()

    @pytest.mark.parametrize("tokens", [50, 1000, 4000])
    def test_sized_prompt(self, tokens: int) -> None:
        """prompt_tokens: N gives exactly N * 4 characters: nonce, filler, then the prompt."""
        text = build_prompt(profile(prompt_tokens=tokens, prompt="Summarise."), "abcd1234")
        assert len(text) == tokens * CHARS_PER_TOKEN
        assert text.startswith("[abcd1234] " + FILLER[:20])
        assert text.endswith("\n\nSummarise.")

    def test_size_below_the_prompt_itself(self) -> None:
        """A size smaller than nonce plus prompt leaves the prompt whole."""
        text = build_prompt(profile(prompt_tokens=2), "n")
        assert text == "[n] Tell a long story about the sea."
