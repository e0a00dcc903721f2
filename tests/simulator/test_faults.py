"""Tests that each scripted Fault produces its wire behaviour, streamed and not."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from exporter.simulator import Fault, ModelScript, OllamaSimulator
from tests.simulator.clients import http_client

BODY = {"model": "m:1b", "prompt": "hi"}


def script(fault: Fault, **changes: Any) -> ModelScript:
    fields: dict[str, Any] = {"first_token_delay": 0.01, "tokens_per_second": 1000.0, "tokens": 5}
    return ModelScript(**{**fields, "fault": fault, "fault_after": 2, **changes})


@pytest.fixture
async def sim() -> AsyncIterator[OllamaSimulator]:
    async with OllamaSimulator() as simulator:
        yield simulator


async def stream_lines(sim: OllamaSimulator, body: dict[str, Any] = BODY) -> list[bytes]:
    """Stream a generate request to its clean end and return the raw lines."""
    async with (
        http_client(sim.url) as client,
        client.stream("POST", "/api/generate", json=body) as response,
    ):
        assert response.status_code == 200
        raw = b"".join([piece async for piece in response.aiter_bytes()])
    return [line for line in raw.split(b"\n") if line]


async def post(sim: OllamaSimulator, body: dict[str, Any] = BODY) -> httpx.Response:
    async with http_client(sim.url) as client:
        return await client.post("/api/generate", json=body)


class TestPreResponseFaults:
    @pytest.mark.parametrize(
        ("fault", "status", "ctype", "body"),
        [
            (
                Fault.BUSY,
                503,
                "application/json; charset=utf-8",
                b'{"error":"server busy, please try again.  maximum pending requests exceeded"}',
            ),
            (
                Fault.HTTP_500,
                500,
                "application/json; charset=utf-8",
                b'{"error":"llama-server process has terminated: exit status 2"}',
            ),
            (Fault.BARE_404, 404, "text/plain; charset=utf-8", b"404 page not found"),
        ],
    )
    async def test_error_status_and_body(
        self, sim: OllamaSimulator, fault: Fault, status: int, ctype: str, body: bytes
    ) -> None:
        """Each pre-response fault answers with its exact status, content type and body."""
        sim.set_script("m:1b", script(fault))
        response = await post(sim)
        assert (status, ctype, body) == (
            response.status_code,
            response.headers["content-type"],
            response.content,
        )

    async def test_close_before_response(self, sim: OllamaSimulator) -> None:
        """The request is read, then the socket closes with no response at all."""
        sim.set_script("m:1b", script(Fault.CLOSE_BEFORE_RESPONSE))
        with pytest.raises(httpx.RemoteProtocolError):
            await post(sim)
        assert len(sim.requests) == 1
        assert sim.requests[0].first_write_ns is None


class TestMidStreamFaults:
    async def test_mid_stream_error(self, sim: OllamaSimulator) -> None:
        """After fault_after chunks an error line ends the stream cleanly, with no done."""
        sim.set_script("m:1b", script(Fault.MID_STREAM_ERROR))
        lines = await stream_lines(sim)
        assert len(lines) == 3
        assert [json.loads(line)["done"] for line in lines[:2]] == [False, False]
        expected = b'{"error":"an error was encountered while running the model: unexpected EOF"}'
        assert expected == lines[2]

    async def test_truncate_raises_remote_protocol_error(self, sim: OllamaSimulator) -> None:
        """The connection drops without the terminating chunk: httpx sees an incomplete body."""
        sim.set_script("m:1b", script(Fault.TRUNCATE))
        received = b""
        with pytest.raises(httpx.RemoteProtocolError):  # noqa: PT012  # reading is the point
            async with (
                http_client(sim.url) as client,
                client.stream("POST", "/api/generate", json=BODY) as response,
            ):
                async for piece in response.aiter_bytes():
                    received += piece
        assert received.count(b"\n") == 2

    async def test_end_without_done(self, sim: OllamaSimulator) -> None:
        """The chunked body ends cleanly after fault_after chunks with no done line."""
        sim.set_script("m:1b", script(Fault.END_WITHOUT_DONE))
        lines = await stream_lines(sim)
        assert [json.loads(line)["done"] for line in lines] == [False, False]

    async def test_stall_pauses_then_continues(self, sim: OllamaSimulator) -> None:
        """A stall holds back chunk fault_after by stall_seconds; the stream then completes."""
        sim.set_script("m:1b", script(Fault.STALL, stall_seconds=0.15))
        lines = await stream_lines(sim)
        assert json.loads(lines[-1])["done"]
        rec = sim.requests[0]
        writes = rec.text_write_ns
        assert len(writes) == 5
        # The stall shifts the absolute schedule once: chunk 2 is due 10 ms + 2 ms + 150 ms
        # in, chunk 1 at 11 ms and chunk 4 2 ms after chunk 2. Less than a stall passes before
        # chunk 1 and after chunk 2 unless the stall is misplaced or repeated; a late wake-up on
        # a busy machine would have to last about as long as the stall itself.
        assert writes[2] - rec.received_ns >= 162_000_000
        assert writes[1] - rec.received_ns < 150_000_000
        assert writes[4] - writes[2] < 150_000_000

    async def test_malformed_line(self, sim: OllamaSimulator) -> None:
        """After fault_after chunks one line is not JSON; the stream then continues."""
        sim.set_script("m:1b", script(Fault.MALFORMED))
        lines = await stream_lines(sim)
        assert lines[2] == b'{"model":"m:1b","respo'
        with pytest.raises(json.JSONDecodeError):
            json.loads(lines[2])
        assert json.loads(lines[-1])["done"]

    async def test_not_json_object_line(self, sim: OllamaSimulator) -> None:
        """After fault_after chunks one line is valid JSON but not an object."""
        sim.set_script("m:1b", script(Fault.NOT_JSON_OBJECT))
        lines = await stream_lines(sim)
        assert json.loads(lines[2]) == [1, 2]
        assert len(lines) == 7

    async def test_fault_after_beyond_tokens_acts_before_done(self, sim: OllamaSimulator) -> None:
        """fault_after larger than the output makes the fault replace the done chunk."""
        sim.set_script("m:1b", script(Fault.MID_STREAM_ERROR, fault_after=99))
        lines = await stream_lines(sim)
        assert len(lines) == 6
        assert lines[-1][:8] == b'{"error"'

    async def test_fault_after_zero_sends_the_error_first(self, sim: OllamaSimulator) -> None:
        """With fault_after=0 the 200 stream starts with the error line."""
        sim.set_script("m:1b", script(Fault.MID_STREAM_ERROR, fault_after=0))
        lines = await stream_lines(sim)
        assert len(lines) == 1
        assert "error" in json.loads(lines[0])


class TestNonStreamingFaults:
    async def test_mid_stream_error_becomes_500(self, sim: OllamaSimulator) -> None:
        """Without streaming a runner error is the whole answer, with status 500."""
        sim.set_script("m:1b", script(Fault.MID_STREAM_ERROR))
        response = await post(sim, {**BODY, "stream": False})
        assert response.status_code == 500
        assert "error" in response.json()

    async def test_truncate_cuts_the_body(self, sim: OllamaSimulator) -> None:
        """Without streaming, truncation cuts a Content-Length body short."""
        sim.set_script("m:1b", script(Fault.TRUNCATE))
        with pytest.raises(httpx.RemoteProtocolError):
            await post(sim, {**BODY, "stream": False})

    async def test_end_without_done(self, sim: OllamaSimulator) -> None:
        """Without streaming, the object has done:false and no done fields."""
        sim.set_script("m:1b", script(Fault.END_WITHOUT_DONE))
        obj = (await post(sim, {**BODY, "stream": False})).json()
        assert list(obj) == ["model", "created_at", "response", "done"]
        assert obj["done"] is False

    @pytest.mark.parametrize(
        ("fault", "body"),
        [(Fault.MALFORMED, b'{"model":"m:1b","respo'), (Fault.NOT_JSON_OBJECT, b"[1,2]")],
    )
    async def test_bad_bodies(self, sim: OllamaSimulator, fault: Fault, body: bytes) -> None:
        """Without streaming, the body is the malformed or non-object JSON text itself."""
        sim.set_script("m:1b", script(fault))
        response = await post(sim, {**BODY, "stream": False})
        assert (200, body) == (response.status_code, response.content)
