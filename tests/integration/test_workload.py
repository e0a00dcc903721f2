"""Runs of a job against the simulator: the /api/ps inventory, ``when: if_loaded`` and
``parallel`` streams, proved with the simulator's own request counters and timestamps."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.clock import SystemClock
from exporter.ollama.client import OllamaClient
from exporter.result import ProbeResult, Reason, SkipReason
from exporter.simulator import ModelScript, OllamaSimulator
from exporter.workload import run_job
from tests.integration.test_probe_faults import closed_port
from tests.support.jobs import make_settings

FAST = ModelScript(first_token_delay=0.02, tokens_per_second=400.0, tokens=100)


async def run(url: str, models: list[str], model: str, **profile: Any) -> ProbeResult:
    """One run of the job for ``model`` on a target configured with ``models``."""
    settings = make_settings(url, models, **profile)
    [job] = [j for j in settings.jobs() if j.model == model]
    client = OllamaClient(job.target)
    try:
        return await run_job(client, job, SystemClock())
    finally:
        await client.aclose()


class TestIfLoaded:
    @pytest.mark.parametrize("api", ["generate", "chat", "openai"])
    async def test_unloaded_model_is_never_asked_to_generate(
        self, sim: OllamaSimulator, api: str
    ) -> None:
        """The model is not resident: the run asks /api/ps, sends no generation request (the
        model's own counters stay at zero, and it is still not loaded), and is skipped."""
        sim.set_script("m", ModelScript(loaded=False))
        result = await run(sim.url, ["m"], "m", api=api, when="if_loaded")
        assert result.skipped is SkipReason.NOT_LOADED
        assert (result.reason, result.success) == (None, False)
        state = sim.model_state("m")
        assert sum(state.requests.values()) == 0
        assert (state.loads, state.loaded()) == (0, False)
        assert [r.path for r in sim.requests] == ["/api/ps"]

    async def test_loaded_model_is_probed(self, sim: OllamaSimulator) -> None:
        """The same profile probes a resident model as usual."""
        sim.set_script("m", FAST)
        result = await run(sim.url, ["m"], "m", when="if_loaded", max_tokens=4)
        assert result.success, result.detail
        assert sim.model_state("m").requests["generate"] == 1
        assert [r.path for r in sim.requests] == ["/api/ps", "/api/generate"]

    async def test_tag_is_matched_as_ollama_names_it(self, sim: OllamaSimulator) -> None:
        """A model configured without a tag is listed by /api/ps as name:latest."""
        sim.set_script("llama3", FAST)
        result = await run(sim.url, ["llama3"], "llama3", when="if_loaded", max_tokens=2)
        assert result.success, result.detail

    async def test_unreadable_inventory_sends_nothing(self) -> None:
        """When /api/ps cannot be read, the run fails with its reason and sends nothing more."""
        url = f"http://127.0.0.1:{closed_port()}"
        result = await run(url, ["m"], "m", when="if_loaded")
        assert result.reason is Reason.CONNECT_ERROR
        assert result.detail.startswith("/api/ps: ")
        assert result.inventory is not None
        assert result.inventory.models is None

    async def test_always_probes_an_unloaded_model(self, sim: OllamaSimulator) -> None:
        """The default, ``when: always``, loads the model by probing it."""
        sim.set_script("m", ModelScript(loaded=False, cold_load_delay=0.05, tokens=4))
        result = await run(sim.url, ["m"], "m", max_tokens=4)
        assert result.success, result.detail
        assert sim.model_state("m").loads == 1


class TestInventory:
    async def test_configured_models_only(self, sim: OllamaSimulator) -> None:
        """Every configured model of the target, loaded or not, with sizes; a model loaded
        on the server but not configured is not reported."""
        sim.set_script("gpu", FAST)
        sim.set_script("half", ModelScript(vram_fraction=0.5))
        sim.set_script("cold", ModelScript(loaded=False))
        sim.set_script("other", FAST)
        result = await run(sim.url, ["gpu", "half", "cold"], "gpu", max_tokens=2)
        assert result.inventory is not None
        models = {r.model: r for r in result.inventory.models or ()}
        assert set(models) == {"gpu", "half", "cold"}
        gpu, half, cold = models["gpu"], models["half"], models["cold"]
        assert gpu.loaded
        assert gpu.vram_bytes == gpu.size_bytes > 0
        assert not gpu.partial_offload
        assert half.loaded
        assert half.vram_bytes == round(half.size_bytes * 0.5)
        assert half.partial_offload
        assert (cold.loaded, cold.size_bytes, cold.vram_bytes, cold.partial_offload) == (
            False, 0, 0, False)  # fmt: skip

    async def test_taken_before_the_probe(self, sim: OllamaSimulator) -> None:
        """The inventory shows the model as users left it: not loaded, though the probe then
        loaded it."""
        sim.set_script("m", ModelScript(loaded=False, cold_load_delay=0.05, tokens=4))
        result = await run(sim.url, ["m"], "m", max_tokens=4)
        assert result.success, result.detail
        assert result.inventory is not None
        assert result.inventory.residency("m") is not None
        assert not result.inventory.residency("m").loaded  # type: ignore[union-attr]
        assert sim.model_state("m").loaded()

    async def test_openai_profiles_do_not_ask(self, sim: OllamaSimulator) -> None:
        """/v1 profiles (other servers have no /api/ps) carry no inventory."""
        sim.set_script("m", FAST)
        result = await run(sim.url, ["m"], "m", api="openai", max_tokens=2)
        assert result.success, result.detail
        assert result.inventory is None
        assert [r.path for r in sim.requests] == ["/v1/chat/completions"]


class TestParallel:
    async def test_streams_start_together_and_queue_at_the_server(
        self, sim: OllamaSimulator
    ) -> None:
        """Four streams against two server slots: all four requests arrive before any
        answer ends, each with its own prompt; the two that waited for a slot show it in
        their TTFT (by about one stream's duration); every stream is in the summary."""
        script = ModelScript(first_token_delay=0.05, tokens_per_second=100.0, tokens=20,
                             num_parallel=2)  # fmt: skip
        sim.set_script("m", script)
        result = await run(sim.url, ["m"], "m", parallel=4, max_tokens=20)
        assert result.success, result.detail
        assert len(result.streams) == 4
        assert all(s.success for s in result.streams)
        generated = [r for r in sim.requests if r.path == "/api/generate"]
        assert len(generated) == 4
        assert len({r.body["prompt"] for r in generated}) == 4
        done = [r.done_write_ns for r in generated if r.done_write_ns is not None]
        assert max(r.received_ns for r in generated) < min(done)
        stream_s = 0.05 + 19 / 100.0
        ttfts = sorted(s.ttft_ns / 1e9 for s in result.streams if s.ttft_ns is not None)
        assert min(ttfts[2:]) - max(ttfts[:2]) > 0.5 * stream_s, ttfts
        assert result.output_tokens == 80
        aggregate = result.parallel_tokens_per_second
        assert aggregate is not None
        # Two slots decoding at 100 tokens/s each: the run cannot have delivered more.
        assert 0 < aggregate <= 2 * 100.0
