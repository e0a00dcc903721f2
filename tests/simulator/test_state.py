"""Model residency, cold loads, parallel slots and counters, seen over loopback as a probe would.

Delays are a few tenths of a second at most; timing checks compare one request with another
measured in the same test (a queued request against the one ahead of it, a warm request
against a cold one) rather than with fixed numbers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from exporter.simulator import ModelScript, OllamaSimulator
from exporter.simulator.http11 import RecordedRequest
from tests.simulator.clients import http_client

FAST = ModelScript(first_token_delay=0.0, tokens_per_second=1000.0, tokens=3)
COLD = dataclasses.replace(FAST, loaded=False, cold_load_delay=0.1)
BODY = {"model": "m:1b", "prompt": "hi"}
S = 1_000_000_000
BUSY = b'{"error":"server busy, please try again.  maximum pending requests exceeded"}'


@pytest.fixture
async def sim() -> AsyncIterator[OllamaSimulator]:
    async with OllamaSimulator({"m:1b": FAST}) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: OllamaSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(sim.url, timeout=10) as http:
        yield http


async def ps(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    models = (await client.get("/api/ps")).json()["models"]
    return {m["name"]: m for m in models}


async def state(client: httpx.AsyncClient, name: str = "m:1b") -> dict[str, Any]:
    response = await client.get(f"/_simulator/models/{name}")
    assert response.status_code == 200
    return response.json()["state"]


def ttft(rec: RecordedRequest) -> int:
    assert rec.first_write_ns is not None
    return rec.first_write_ns - rec.received_ns


async def generate(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    return await client.post("/api/generate", json={**BODY, "stream": False, **fields})


class TestPs:
    async def test_lists_loaded_models_only(self, sim: OllamaSimulator, client) -> None:
        """/api/ps shows resident models with Ollama's fields, in Ollama's order."""
        sim.set_script("cold:1b", COLD)
        models = await ps(client)
        assert list(models) == ["m:1b"]
        assert list(models["m:1b"]) == [
            "name",
            "model",
            "size",
            "digest",
            "details",
            "expires_at",
            "size_vram",
            "context_length",
        ]
        assert models["m:1b"]["size_vram"] == models["m:1b"]["size"] > 0

    @pytest.mark.parametrize("fraction", [0.25, 0.0])
    async def test_partial_offload(self, sim: OllamaSimulator, client, fraction: float) -> None:
        """vram_fraction below 1 makes size_vram smaller than size (0 = CPU only)."""
        sim.set_script("m:1b", dataclasses.replace(FAST, vram_fraction=fraction))
        model = (await ps(client))["m:1b"]
        assert model["size_vram"] == round(model["size"] * fraction) < model["size"]

    @pytest.mark.parametrize(
        ("keep_alive", "expected"),
        [(None, timedelta(minutes=5)), ("10m", timedelta(minutes=10)), (90, timedelta(seconds=90))],
    )
    async def test_expires_at_follows_keep_alive(
        self, client, keep_alive: object, expected: timedelta
    ) -> None:
        """Each request restarts the idle timer with its keep_alive, or the model's current one."""
        fields = {} if keep_alive is None else {"keep_alive": keep_alive}
        assert (await generate(client, **fields)).status_code == 200
        expires = datetime.fromisoformat((await ps(client))["m:1b"]["expires_at"])
        left = expires - datetime.now().astimezone()
        assert expected - timedelta(seconds=30) < left <= expected

    async def test_negative_keep_alive_never_expires(self, client) -> None:
        """A negative keep_alive keeps the model forever, shown as a date centuries away."""
        await generate(client, keep_alive=-1)
        expires = datetime.fromisoformat((await ps(client))["m:1b"]["expires_at"])
        assert expires.year > 2200


class TestColdLoad:
    async def test_a_request_loads_the_model(self, sim: OllamaSimulator, client) -> None:
        """A generate request waits for the load, reports it, and leaves the model listed."""
        sim.set_script("m:1b", COLD)
        assert (await state(client))["loaded"] is False
        response = await generate(client)
        assert response.status_code == 200
        assert ttft(sim.requests[-1]) >= 0.1 * S
        assert response.json()["load_duration"] >= round((0.1 + FAST.load_duration) * S)
        assert "m:1b" in await ps(client)
        after = await state(client)
        assert (after["loaded"], after["loads"], after["requests"]["generate"]) == (True, 1, 1)

    async def test_a_loaded_model_answers_without_reloading(
        self, sim: OllamaSimulator, client
    ) -> None:
        """Once loaded, the next request skips the load: it reports no load wait."""
        sim.set_script("m:1b", COLD)
        cold = (await generate(client)).json()
        warm = (await generate(client)).json()
        assert warm["load_duration"] < 0.1 * S <= cold["load_duration"]
        assert (await state(client))["loads"] == 1

    async def test_concurrent_requests_share_one_load(self, sim: OllamaSimulator, client) -> None:
        """Requests arriving during a load wait for that load instead of starting another."""
        sim.set_script("m:1b", COLD)
        responses = await asyncio.gather(*(generate(client) for _ in range(3)))
        assert [r.status_code for r in responses] == [200] * 3
        assert (await state(client))["loads"] == 1
        load_end = min(rec.received_ns for rec in sim.requests) + 0.1 * S
        assert all(rec.first_write_ns >= load_end for rec in sim.requests)  # type: ignore[operator]

    async def test_a_full_load_queue_answers_503(self, sim: OllamaSimulator, client) -> None:
        """Beyond max_queue requests waiting for a load, Ollama answers 503 at once."""
        # A 0.2 s load: all three surely arrive while it runs, even on a busy machine.
        sim.set_script("m:1b", dataclasses.replace(COLD, max_queue=1, cold_load_delay=0.2))
        responses = await asyncio.gather(*(generate(client) for _ in range(3)))
        assert sorted(r.status_code for r in responses) == [200, 200, 503]
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.content == BUSY
        assert busy.headers["content-type"] == "application/json; charset=utf-8"
        loaded = [ttft(rec) for rec in sim.requests]
        assert min(loaded) < max(loaded) / 4  # the 503 did not wait for the load

    async def test_client_leaving_abandons_the_load(self, sim: OllamaSimulator) -> None:
        """A client that gives up during the load aborts it: the next request loads afresh."""
        sim.set_script("m:1b", dataclasses.replace(COLD, cold_load_delay=0.15))
        async with http_client(sim.url, timeout=0.05) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await generate(impatient)
        await asyncio.wait_for(sim.wait_idle(), timeout=5)
        async with http_client(sim.url, timeout=10) as client:
            abandoned = await state(client)
            assert (abandoned["loaded"], abandoned["loads"]) == (False, 0)
            assert abandoned["waiting_for_load"] == 0
            await generate(client)
            assert ttft(sim.requests[-1]) >= 0.15 * S  # a whole load, not what was left of one
            assert (await state(client))["loads"] == 1

    async def test_keep_alive_zero_unloads_after_the_request(self, client) -> None:
        """keep_alive 0 answers normally, then the model is no longer resident."""
        assert (await generate(client, keep_alive=0)).status_code == 200
        assert await ps(client) == {}

    async def test_load_only_unload(self, client) -> None:
        """An empty prompt with keep_alive 0 unloads the model and says so."""
        response = await client.post("/api/generate", json={"model": "m:1b", "keep_alive": 0})
        assert response.json()["done_reason"] == "unload"
        assert await ps(client) == {}

    async def test_load_only_loads(self, sim: OllamaSimulator, client) -> None:
        """An empty prompt loads a cold model and answers done_reason load after it."""
        sim.set_script("m:1b", COLD)
        response = await client.post("/api/chat", json={"model": "m:1b", "messages": []})
        assert response.json()["done_reason"] == "load"
        assert ttft(sim.requests[-1]) >= 0.1 * S
        assert "m:1b" in await ps(client)

    async def test_put_loaded_false_makes_the_model_cold(self, client) -> None:
        """The control API can take a model out of memory, and counts survive it."""
        await generate(client)
        response = await client.put("/_simulator/models/m:1b", json={"loaded": False})
        assert response.status_code == 200
        assert await ps(client) == {}
        assert (await state(client))["requests"]["generate"] == 1

    async def test_get_model_state_of_an_unknown_model_is_404(self, client) -> None:
        """Reading the state of a model the simulator does not have is a 404."""
        assert (await client.get("/_simulator/models/nope")).status_code == 404


class TestParallelSlots:
    SLOW = dataclasses.replace(FAST, tokens=20, tokens_per_second=200.0)  # ~0.1 s each

    async def test_num_parallel_queues_and_ttft_grows(self, sim: OllamaSimulator, client) -> None:
        """With one slot the second request starts after the first ends: its TTFT holds it."""
        sim.set_script("m:1b", dataclasses.replace(self.SLOW, num_parallel=1, max_queue=0))
        responses = await asyncio.gather(*(generate(client, stream=True) for _ in range(2)))
        assert [r.status_code for r in responses] == [200, 200]  # the slot queue is unbounded
        first, second = sorted(sim.requests, key=ttft)
        assert first.done_write_ns is not None
        assert second.first_write_ns is not None
        # so its TTFT holds the wait for the slot
        assert second.first_write_ns >= first.done_write_ns

    async def test_no_limit_by_default(self, sim: OllamaSimulator, client) -> None:
        """Without num_parallel, concurrent requests generate side by side."""
        sim.set_script("m:1b", self.SLOW)
        await asyncio.gather(*(generate(client, stream=True) for _ in range(3)))
        # No request waited for another's slot: each began before its own generation's
        # length had passed (with one slot, the third would wait for two generations).
        for rec in sim.requests:
            assert rec.done_write_ns is not None
            assert rec.first_write_ns is not None
            assert ttft(rec) < rec.done_write_ns - rec.first_write_ns

    async def test_state_counts_running_and_queued(self, sim: OllamaSimulator, client) -> None:
        """While one request generates and another waits for its slot, the state says so."""
        sim.set_script("m:1b", dataclasses.replace(FAST, tokens=2000, num_parallel=1))
        async with client.stream("POST", "/api/generate", json=BODY) as first:
            chunks = first.aiter_bytes()  # kept: dropping the iterator would close the stream
            await anext(chunks)
            chat = {"model": "m:1b", "messages": [{"role": "user", "content": "hi"}]}
            waiting = asyncio.create_task(client.post("/api/chat", json=chat))
            try:
                current = await state(client)
                for _ in range(200):  # until the second request has arrived and queued
                    if current["queued"] == 1:
                        break
                    await asyncio.sleep(0.01)
                    current = await state(client)
            finally:
                waiting.cancel()
        assert (current["running"], current["queued"]) == (1, 1)
        assert current["requests"] == {"generate": 1, "chat": 1, "openai": 0}
