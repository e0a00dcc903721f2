"""Tests for /api/generate and /api/chat over real loopback HTTP: shapes, counts and faults."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from exporter.simulator import ModelScript, OllamaSimulator
from tests.simulator.clients import http_client

FAST = ModelScript(first_token_delay=0.01, tokens_per_second=1000.0, tokens=5)
GENERATE = {"model": "m:1b", "prompt": "One sentence about the sea."}
CHAT = {"model": "m:1b", "messages": [{"role": "user", "content": "hi"}]}
METRICS = [
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
]


@pytest.fixture
async def sim() -> AsyncIterator[OllamaSimulator]:
    async with OllamaSimulator({"m:1b": FAST}) as simulator:
        yield simulator


async def post_stream(
    sim: OllamaSimulator, path: str, body: dict[str, Any]
) -> tuple[httpx.Response, list[bytes]]:
    """POST and return the response and its raw NDJSON lines (split by hand, not aiter_lines)."""
    async with (
        http_client(sim.url) as client,
        client.stream("POST", path, json=body) as response,
    ):
        raw = b"".join([piece async for piece in response.aiter_bytes()])
    assert raw == b"" or raw.endswith(b"\n")
    return response, [line for line in raw.split(b"\n") if line]


async def post_objects(
    sim: OllamaSimulator, path: str, body: dict[str, Any]
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    response, lines = await post_stream(sim, path, body)
    return response, [json.loads(line) for line in lines]


def with_script(sim: OllamaSimulator, **changes: Any) -> None:
    sim.set_script("m:1b", dataclasses.replace(FAST, **changes))


class TestStreamShape:
    async def test_generate_field_order(self, sim: OllamaSimulator) -> None:
        """Generate chunks follow Ollama's struct order, and the done chunk ends the stream."""
        response, objs = await post_objects(sim, "/api/generate", GENERATE)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        assert response.headers["transfer-encoding"] == "chunked"
        for obj in objs[:-1]:
            assert list(obj) == ["model", "created_at", "response", "done"]
        done = objs[-1]
        assert ["model", "created_at", "response", "done", "done_reason", *METRICS] == list(done)
        assert (done["response"], done["done"], done["done_reason"]) == ("", True, "stop")
        assert "".join(obj["response"] for obj in objs) == "Waves roll in from the"

    async def test_chat_field_order(self, sim: OllamaSimulator) -> None:
        """Chat chunks carry message{role,content}, and the done chunk has no context."""
        with_script(sim, context_tokens=10)
        _, objs = await post_objects(sim, "/api/chat", CHAT)
        for obj in objs[:-1]:
            assert list(obj) == ["model", "created_at", "message", "done"]
            assert list(obj["message"]) == ["role", "content"]
        done = objs[-1]
        assert ["model", "created_at", "message", "done", "done_reason", *METRICS] == list(done)
        assert done["message"] == {"role": "assistant", "content": ""}

    async def test_generate_context_array(self, sim: OllamaSimulator) -> None:
        """context_tokens adds a context array of that length right after done_reason."""
        with_script(sim, context_tokens=12)
        _, objs = await post_objects(sim, "/api/generate", GENERATE)
        assert list(objs[-1])[4:7] == ["done_reason", "context", "total_duration"]
        assert len(objs[-1]["context"]) == 12

    async def test_model_name_is_echoed_as_sent(self, sim: OllamaSimulator) -> None:
        """An untagged name resolves to :latest but chunks quote the name as sent."""
        sim.set_script("llama3:latest", FAST)
        _, objs = await post_objects(sim, "/api/generate", {**GENERATE, "model": "llama3"})
        assert {"llama3"} == {obj["model"] for obj in objs}

    async def test_created_at_is_utc_rfc3339(self, sim: OllamaSimulator) -> None:
        """created_at is UTC with a Z suffix and never goes backwards within a stream."""
        _, objs = await post_objects(sim, "/api/generate", GENERATE)
        stamps = [obj["created_at"] for obj in objs]
        assert all(stamp.endswith("Z") for stamp in stamps)
        times = [datetime.fromisoformat(stamp) for stamp in stamps]
        assert times == sorted(times)


class TestCounts:
    @pytest.mark.parametrize(
        ("num_predict", "count", "reason"), [(None, 5, "stop"), (3, 3, "length"), (9, 5, "stop")]
    )
    async def test_eval_count_is_capped_by_num_predict(
        self, sim: OllamaSimulator, num_predict: int | None, count: int, reason: str
    ) -> None:
        """eval_count is min(tokens, num_predict), one text chunk per token, reason to match."""
        body = {**GENERATE, "options": {"num_predict": num_predict}}
        _, objs = await post_objects(sim, "/api/generate", body)
        assert count == len(objs) - 1
        assert (count, reason) == (objs[-1]["eval_count"], objs[-1]["done_reason"])

    async def test_zero_metrics_are_omitted(self, sim: OllamaSimulator) -> None:
        """Metrics whose value is zero are left out of the done chunk, as Ollama does."""
        with_script(sim, load_duration=0.0, prompt_eval_count=0, prompt_eval_duration=0.0)
        _, objs = await post_objects(sim, "/api/generate", GENERATE)
        assert list(objs[-1])[5:] == ["total_duration", "eval_count", "eval_duration"]

    async def test_report_counts_false_strips_counts(self, sim: OllamaSimulator) -> None:
        """report_counts=False drops eval_* and prompt_eval_*, like a stripping proxy."""
        with_script(sim, report_counts=False)
        _, objs = await post_objects(sim, "/api/chat", CHAT)
        assert list(objs[-1])[5:] == ["total_duration", "load_duration"]

    async def test_reported_durations(self, sim: OllamaSimulator) -> None:
        """Durations are integer ns from the script, and total covers the reported parts."""
        with_script(sim, eval_duration=1.5, load_duration=0.25, prompt_eval_duration=0.125)
        _, objs = await post_objects(sim, "/api/generate", GENERATE)
        done = objs[-1]
        assert (
            done["eval_duration"],
            done["load_duration"],
            done["prompt_eval_duration"],
        ) == (1_500_000_000, 250_000_000, 125_000_000)
        assert done["total_duration"] >= 1_875_000_000


class TestThinking:
    async def test_generate_thinking_chunks(self, sim: OllamaSimulator) -> None:
        """Thinking tokens come first, in "thinking" with an empty response."""
        with_script(sim, thinking_tokens=2)
        _, objs = await post_objects(sim, "/api/generate", GENERATE)
        assert [list(obj) for obj in objs[:2]] == [
            ["model", "created_at", "response", "thinking", "done"]
        ] * 2
        assert [obj["response"] for obj in objs[:2]] == ["", ""]
        assert [obj["thinking"] for obj in objs[:2]] == ["Okay", ","]
        assert "thinking" not in objs[2]
        assert objs[-1]["eval_count"] == 5

    async def test_chat_thinking_chunks(self, sim: OllamaSimulator) -> None:
        """Chat thinking goes in message.thinking with empty content."""
        with_script(sim, thinking_tokens=2)
        _, objs = await post_objects(sim, "/api/chat", CHAT)
        assert objs[0]["message"] == {"role": "assistant", "content": "", "thinking": "Okay"}
        assert objs[2]["message"] == {"role": "assistant", "content": "Waves"}

    async def test_think_false_suppresses_thinking(self, sim: OllamaSimulator) -> None:
        """think:false makes every token answer text; the token count stays the same."""
        with_script(sim, thinking_tokens=2)
        _, objs = await post_objects(sim, "/api/chat", {**CHAT, "think": False})
        assert not any("thinking" in obj["message"] for obj in objs)
        assert objs[-1]["eval_count"] == 5


class TestNonStreaming:
    async def test_stream_false_returns_one_object(self, sim: OllamaSimulator) -> None:
        """stream:false answers one JSON object with the whole text and the done fields."""
        with_script(sim, thinking_tokens=1)
        async with http_client(sim.url) as client:
            response = await client.post("/api/generate", json={**GENERATE, "stream": False})
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        obj = response.json()
        assert list(obj)[:6] == [
            "model",
            "created_at",
            "response",
            "thinking",
            "done",
            "done_reason",
        ]
        assert (
            obj["response"],
            obj["thinking"],
            obj["eval_count"],
        ) == ("Waves roll in from", "Okay", 5)
        assert sim.requests[-1].done_write_ns is not None

    async def test_load_only_chat(self, sim: OllamaSimulator) -> None:
        """Empty messages get one load object, not a stream, and no metrics."""
        async with http_client(sim.url) as client:
            response = await client.post("/api/chat", json={"model": "m:1b", "messages": []})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        obj = response.json()
        assert list(obj) == ["model", "created_at", "message", "done", "done_reason"]
        assert (
            obj["message"],
            obj["done_reason"],
        ) == ({"role": "assistant", "content": ""}, "load")

    async def test_load_only_generate(self, sim: OllamaSimulator) -> None:
        """An empty prompt gets response "" and done_reason load."""
        async with http_client(sim.url) as client:
            response = await client.post("/api/generate", json={"model": "m:1b", "prompt": ""})
        obj = response.json()
        assert list(obj) == ["model", "created_at", "response", "done", "done_reason"]
        assert (obj["response"], obj["done"], obj["done_reason"]) == ("", True, "load")


class TestErrors:
    async def test_unknown_model_is_json_404(self, sim: OllamaSimulator) -> None:
        """An unknown model is a 404 with Ollama's exact JSON body and no trailing newline."""
        async with http_client(sim.url) as client:
            response = await client.post("/api/chat", json={**CHAT, "model": "llama3.2:3b"})
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert response.content == b'{"error":"model \'llama3.2:3b\' not found"}'

    async def test_bad_json_is_400(self, sim: OllamaSimulator) -> None:
        """A body that is not JSON is a 400 with a JSON error object."""
        async with http_client(sim.url) as client:
            response = await client.post("/api/generate", content=b"{nope")
        assert response.status_code == 400
        assert list(response.json()) == ["error"]

    async def test_wrong_option_type_is_500(self, sim: OllamaSimulator) -> None:
        """A string num_predict is a 500, as in Ollama."""
        body = {**GENERATE, "options": {"num_predict": "10"}}
        async with http_client(sim.url) as client:
            response = await client.post("/api/generate", json=body)
        assert response.status_code == 500
        assert response.json() == {"error": 'option "num_predict" must be of type integer'}


class TestStreamFalseTiming:
    @pytest.mark.parametrize(("path", "body"), [("/api/generate", GENERATE), ("/api/chat", CHAT)])
    async def test_answer_waits_for_the_whole_generation(
        self, sim: OllamaSimulator, path: str, body: dict[str, Any]
    ) -> None:
        """stream:false answers once the last token is due, with the whole text and done fields."""
        with_script(sim, first_token_delay=0.02, tokens_per_second=100.0)
        async with http_client(sim.url) as client:
            response = await client.post(path, json={**body, "stream": False})
        obj = response.json()
        text = obj["response"] if path == "/api/generate" else obj["message"]["content"]
        assert (text, obj["done"], obj["eval_count"]) == ("Waves roll in from the", True, 5)
        rec = sim.requests[-1]
        assert rec.done_write_ns is not None
        assert rec.text_write_ns == []
        assert rec.done_write_ns - rec.received_ns >= 60_000_000  # 20 ms + 4 steps of 10 ms


class TestPromptTokens:
    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/api/generate", {"model": "m:1b", "prompt": "x" * 300, "system": "y" * 100}),
            (
                "/api/chat",
                {"model": "m:1b", "messages": [{"content": "x" * 200}, {"content": "y" * 200}]},
            ),
        ],
    )
    async def test_count_follows_the_prompt_length(
        self, sim: OllamaSimulator, path: str, body: dict[str, Any]
    ) -> None:
        """Without a scripted count, 400 characters of prompt text report 100 prompt tokens."""
        _, objs = await post_objects(sim, path, body)
        assert objs[-1]["prompt_eval_count"] == 100

    async def test_scripted_count_wins(self, sim: OllamaSimulator) -> None:
        """A scripted prompt_eval_count is reported whatever the prompt."""
        with_script(sim, prompt_eval_count=26)
        _, objs = await post_objects(sim, "/api/generate", {**GENERATE, "prompt": "x" * 999})
        assert objs[-1]["prompt_eval_count"] == 26

    async def test_long_prompt_slows_the_first_token(self, sim: OllamaSimulator) -> None:
        """With a prefill rate, prefill time grows with the prompt and delays the first token."""
        with_script(sim, prompt_tokens_per_second=10_000.0)
        _, short = await post_objects(sim, "/api/generate", {**GENERATE, "prompt": "hi there"})
        _, long = await post_objects(sim, "/api/generate", {**GENERATE, "prompt": "x" * 4000})
        assert (short[-1]["prompt_eval_count"], long[-1]["prompt_eval_count"]) == (2, 1000)
        assert long[-1]["prompt_eval_duration"] == 100_000_000  # 1000 tokens at 10k/s
        short_ttft, long_ttft = (rec.text_write_ns[0] - rec.received_ns for rec in sim.requests)
        assert long_ttft >= 110_000_000  # 10 ms first-token delay + 100 ms prefill
        assert short_ttft < long_ttft - 50_000_000
