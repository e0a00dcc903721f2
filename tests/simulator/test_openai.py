"""``/v1/chat/completions`` over loopback: OpenAI's SSE and JSON shapes on the scripted schedule."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from exporter.simulator import Fault, ModelScript, OllamaSimulator
from tests.simulator.clients import http_client

FAST = ModelScript(first_token_delay=0.01, tokens_per_second=1000.0, tokens=5)
PROMPT = "One sentence about the sea."  # 27 characters: 7 prompt tokens at ~4 per token
CHAT: dict[str, Any] = {"model": "m:1b", "messages": [{"role": "user", "content": PROMPT}]}
STREAM = {**CHAT, "stream": True}
USAGE = {**STREAM, "stream_options": {"include_usage": True}}
ENVELOPE = ["id", "object", "created", "model", "system_fingerprint", "choices"]
MS = 1_000_000


@pytest.fixture
async def sim() -> AsyncIterator[OllamaSimulator]:
    async with OllamaSimulator({"m:1b": FAST}) as simulator:
        yield simulator


def with_script(sim: OllamaSimulator, **changes: Any) -> None:
    sim.set_script("m:1b", dataclasses.replace(FAST, **changes))


async def events(sim: OllamaSimulator, body: dict[str, Any]) -> tuple[httpx.Response, list[bytes]]:
    """Stream a request and return the response and each SSE event's data, split by hand."""
    async with (
        http_client(sim.url) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        raw = b"".join([piece async for piece in response.aiter_bytes()])
    frames = raw.split(b"\n\n")
    assert frames.pop() == b""  # every event ends with a blank line
    assert all(frame.startswith(b"data: ") for frame in frames)
    return response, [frame.removeprefix(b"data: ") for frame in frames]


async def post(sim: OllamaSimulator, body: Any) -> httpx.Response:
    async with http_client(sim.url) as client:
        return await client.post("/v1/chat/completions", json=body)


class TestStream:
    async def test_chunks_then_finish_usage_and_done(self, sim: OllamaSimulator) -> None:
        """Text chunks, a finish chunk, the usage chunk, then [DONE], as Ollama's middleware."""
        response, data = await events(sim, USAGE)
        assert response.headers["content-type"] == "text/event-stream"
        assert data[-1] == b"[DONE]"
        chunks = [json.loads(item) for item in data[:-1]]
        assert all(list(chunk)[:6] == ENVELOPE for chunk in chunks)
        assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
        assert chunks[0]["object"] == "chat.completion.chunk"
        assert chunks[0]["system_fingerprint"] == "fp_ollama"
        assert chunks[0]["choices"] == [
            {"index": 0, "delta": {"role": "assistant", "content": "Waves"}, "finish_reason": None}
        ]
        text = "".join(c["choices"][0]["delta"]["content"] for c in chunks[:5])
        assert text == "Waves roll in from the"
        assert chunks[5]["choices"] == [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": "stop"}
        ]
        assert chunks[6]["choices"] == []
        assert chunks[6]["usage"] == {
            "prompt_tokens": 7,
            "completion_tokens": 5,
            "total_tokens": 12,
        }
        assert len(chunks) == 7

    async def test_no_usage_unless_asked(self, sim: OllamaSimulator) -> None:
        """Without stream_options.include_usage the finish chunk is followed by [DONE] only."""
        _, data = await events(sim, STREAM)
        assert len(data) == 7
        assert all(b'"usage"' not in item for item in data)

    async def test_max_tokens_caps_with_length(self, sim: OllamaSimulator) -> None:
        """max_tokens below the model's output ends early with finish_reason length."""
        _, data = await events(sim, {**USAGE, "max_tokens": 2})
        chunks = [json.loads(item) for item in data[:-1]]
        assert [c["choices"][0]["finish_reason"] for c in chunks[:3]] == [None, None, "length"]
        assert chunks[-1]["usage"]["completion_tokens"] == 2

    async def test_thinking_goes_in_reasoning(self, sim: OllamaSimulator) -> None:
        """A thinking model's first tokens come as delta.reasoning with empty content."""
        with_script(sim, thinking_tokens=2)
        _, data = await events(sim, STREAM)
        deltas = [json.loads(item)["choices"][0]["delta"] for item in data[:3]]
        assert deltas == [
            {"role": "assistant", "content": "", "reasoning": "Okay"},
            {"role": "assistant", "content": "", "reasoning": ","},
            {"role": "assistant", "content": "Waves"},
        ]

    async def test_reasoning_effort_none_turns_thinking_off(self, sim: OllamaSimulator) -> None:
        """reasoning_effort none maps to think false: no reasoning deltas."""
        with_script(sim, thinking_tokens=2)
        _, data = await events(sim, {**STREAM, "reasoning_effort": "none"})
        assert all(b'"reasoning"' not in item for item in data)

    async def test_same_schedule_as_the_native_api(self, sim: OllamaSimulator) -> None:
        """Events are written on the script's schedule; headers wait for the first one."""
        with_script(sim, first_token_delay=0.05)
        await events(sim, STREAM)
        rec = sim.requests[-1]
        assert rec.path == "/v1/chat/completions"
        assert len(rec.text_write_ns) == 5
        assert rec.first_write_ns == rec.text_write_ns[0]
        assert rec.text_write_ns[0] - rec.received_ns >= 50 * MS
        assert rec.done_write_ns is not None
        assert rec.done_write_ns >= rec.text_write_ns[-1]

    async def test_counted_as_openai_requests(self, sim: OllamaSimulator) -> None:
        """The model's counters tell /v1 requests apart from native ones."""
        await events(sim, STREAM)
        assert sim.model_state("m:1b").requests == {"openai": 1}


class TestWhole:
    async def test_stream_defaults_to_false(self, sim: OllamaSimulator) -> None:
        """Without stream: true the answer is one chat.completion object, after the generation."""
        response = await post(sim, CHAT)
        assert response.headers["content-type"] == "application/json"
        assert response.content.endswith(b"}\n")  # Go's json.Encoder
        obj = response.json()
        assert [*ENVELOPE, "usage"] == list(obj)
        assert obj["object"] == "chat.completion"
        assert obj["choices"] == [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Waves roll in from the"},
                "finish_reason": "stop",
            }
        ]
        assert obj["usage"] == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
        rec = sim.requests[-1]
        assert rec.done_write_ns is not None
        assert rec.done_write_ns - rec.received_ns >= (10 + 4) * MS  # first token + 4 steps


class TestErrors:
    async def test_unknown_model_is_not_found_error(self, sim: OllamaSimulator) -> None:
        """The native 404 comes back in OpenAI's error shape."""
        response = await post(sim, {**CHAT, "model": "nope"})
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "error": {
                "message": "model 'nope' not found",
                "type": "not_found_error",
                "param": None,
                "code": None,
            }
        }

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ({"model": "m:1b", "messages": []}, "[] is too short - 'messages'"),
            ({"model": "m:1b"}, "[] is too short - 'messages'"),
            (
                {**CHAT, "reasoning_effort": "lots"},
                'invalid reasoning value: \'lots\' (must be "high", "medium", "low", or "none")',
            ),
            (
                {**CHAT, "max_tokens": "5"},
                "json: cannot unmarshal string into Go struct field "
                "ChatCompletionRequest.max_tokens of type int",
            ),
        ],
    )
    async def test_middleware_refusals(
        self, sim: OllamaSimulator, body: dict[str, Any], message: str
    ) -> None:
        """Requests the OpenAI middleware refuses are 400 invalid_request_error."""
        response = await post(sim, body)
        assert (response.status_code, response.headers["content-type"]) == (
            400,
            "application/json; charset=utf-8",
        )
        error = response.json()["error"]
        assert (error["type"], error["message"]) == ("invalid_request_error", message)

    async def test_busy_is_api_error(self, sim: OllamaSimulator) -> None:
        """A 503 from the scheduler is an api_error with Ollama's message."""
        with_script(sim, fault=Fault.BUSY)
        response = await post(sim, STREAM)
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["type"] == "api_error"
        assert (
            error["message"] == "server busy, please try again.  maximum pending requests exceeded"
        )


class TestFaults:
    async def test_mid_stream_error_ends_without_done(self, sim: OllamaSimulator) -> None:
        """A runner error mid-stream shows as an empty chunk, then the stream just ends."""
        with_script(sim, fault=Fault.MID_STREAM_ERROR, fault_after=2)
        _, data = await events(sim, USAGE)
        chunks = [json.loads(item) for item in data]
        assert len(chunks) == 3
        assert chunks[2]["choices"][0] == {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "finish_reason": None,
        }

    async def test_truncate(self, sim: OllamaSimulator) -> None:
        """A dropped connection mid-stream is an incomplete body for the client."""
        with_script(sim, fault=Fault.TRUNCATE, fault_after=2)
        with pytest.raises(httpx.RemoteProtocolError):
            await events(sim, STREAM)

    @pytest.mark.parametrize(
        ("fault", "payload"),
        [(Fault.MALFORMED, b'{"id":"chatcmpl-1","obj'), (Fault.NOT_JSON_OBJECT, b"[1,2]")],
    )
    async def test_bad_events(self, sim: OllamaSimulator, fault: Fault, payload: bytes) -> None:
        """A malformed or non-object event comes after fault_after chunks; the stream goes on."""
        with_script(sim, fault=fault, fault_after=2)
        _, data = await events(sim, STREAM)
        assert data[2] == payload
        assert data[-1] == b"[DONE]"

    async def test_mid_stream_error_without_streaming_is_500(self, sim: OllamaSimulator) -> None:
        """Without streaming the runner error is the whole answer, in OpenAI's shape."""
        with_script(sim, fault=Fault.MID_STREAM_ERROR)
        response = await post(sim, CHAT)
        assert response.status_code == 500
        assert response.json()["error"]["type"] == "api_error"
