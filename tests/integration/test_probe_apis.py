"""Each wire and mode against the simulator over loopback: /v1 SSE, unstreamed answers, the
sized prompt, keep_alive, and the reasons /v1 faults earn."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.result import NS_PER_S, ProbeResult, Reason
from exporter.simulator import Fault, ModelScript, OllamaSimulator
from tests.support.jobs import make_job, probe_job

FAST = ModelScript(first_token_delay=0.02, tokens_per_second=400.0, tokens=100)


async def probe(url: str, model: str = "m", **profile: Any) -> ProbeResult:
    return await probe_job(make_job(url, model, **profile))


class TestOpenAI:
    async def test_streamed_probe(self, sim: OllamaSimulator) -> None:
        """/v1 with include_usage: N from usage.completion_tokens, TTFT and client rate
        measured, no server timings; the request asks for usage and caps max_tokens."""
        sim.set_script("m", FAST)
        result = await probe(sim.url, api="openai", max_tokens=16)
        assert result.success, result.detail
        assert (result.output_tokens, result.tokens_from_chunks, result.text_chunks) == (
            16,
            False,
            16,
        )
        assert result.ttft_ns is not None
        assert result.tokens_per_second is not None
        assert result.server is not None
        assert not result.server.timings
        assert result.server_tokens_per_second is None
        assert result.prompt_tokens_per_second is None
        assert result.prompt_tokens == result.server.prompt_eval_count > 0
        [request] = [r for r in sim.requests if r.path == "/v1/chat/completions"]
        assert request.body["stream_options"] == {"include_usage": True}
        assert request.body["max_tokens"] == 16
        assert sim.model_state("m").requests["openai"] == 1

    async def test_not_streamed(self, sim: OllamaSimulator) -> None:
        """stream: false on /v1: a duration and the token count, no TTFT, no client rate."""
        sim.set_script("m", FAST)
        result = await probe(sim.url, api="openai", stream=False, max_tokens=16)
        assert result.success, result.detail
        assert (result.ttft_ns, result.ttfct_ns, result.decode_span_ns) == (None, None, None)
        assert result.tokens_per_second is None
        assert result.output_tokens == 16
        assert result.elapsed_ns > 0

    @pytest.mark.parametrize(
        ("fault", "reason"),
        [
            (Fault.BUSY, Reason.SERVER_BUSY),
            (Fault.HTTP_500, Reason.HTTP_ERROR),
            (Fault.BARE_404, Reason.HTTP_ERROR),
            # Ollama's /v1 turns a runner error into an empty chunk and ends without [DONE].
            (Fault.MID_STREAM_ERROR, Reason.TRUNCATED),
            (Fault.TRUNCATE, Reason.TRUNCATED),
            (Fault.END_WITHOUT_DONE, Reason.TRUNCATED),
            (Fault.CLOSE_BEFORE_RESPONSE, Reason.TRUNCATED),
            (Fault.MALFORMED, Reason.INVALID_RESPONSE),
            (Fault.NOT_JSON_OBJECT, Reason.INVALID_RESPONSE),
        ],
    )
    async def test_fault_gives_its_reason(
        self, sim: OllamaSimulator, fault: Fault, reason: Reason
    ) -> None:
        """The simulator's faults, in /v1 shapes, earn the same reasons as on /api."""
        sim.set_script("m", ModelScript(first_token_delay=0.02, tokens_per_second=200.0,
                                        tokens=20, fault=fault, fault_after=3))  # fmt: skip
        result = await probe(sim.url, api="openai", max_tokens=20)
        assert result.reason is reason, result.detail

    async def test_unknown_model(self, sim: OllamaSimulator) -> None:
        """/v1's 404 error object for an unknown model is model_not_found."""
        result = await probe(sim.url, "nope:1b", api="openai")
        assert result.reason is Reason.MODEL_NOT_FOUND, result.detail

    async def test_nothing_generated(self, sim: OllamaSimulator) -> None:
        """Usage and [DONE] with no text before them is empty_response."""
        sim.set_script("m", ModelScript(first_token_delay=0.02, tokens=0))
        result = await probe(sim.url, api="openai")
        assert result.reason is Reason.EMPTY_RESPONSE, result.detail


class TestNotStreamed:
    @pytest.mark.parametrize("api", ["generate", "chat"])
    async def test_duration_and_server_rates_only(self, sim: OllamaSimulator, api: str) -> None:
        """One JSON answer: no TTFT nor client rate, but the duration and Ollama's numbers."""
        sim.set_script("m", ModelScript(first_token_delay=0.02, tokens_per_second=400.0,
                                        tokens=100, context_tokens=50))  # fmt: skip
        result = await probe(sim.url, api=api, stream=False, max_tokens=16)
        assert result.success, result.detail
        assert (result.ttft_ns, result.ttfct_ns, result.tokens_per_second) == (None, None, None)
        assert result.server_tokens_per_second == pytest.approx(400.0)
        assert result.output_tokens == 16
        [request] = [r for r in sim.requests if r.path == f"/api/{api}"]
        assert request.body["stream"] is False
        assert request.done_write_ns is not None
        # The duration reaches to the answer, which the server writes no earlier than its
        # scripted generation ends (first token, then 15 more at 400 tok/s) after it read
        # the request. Not against the server's clock reading after its send(): a loaded
        # kernel may transmit, and stamp the arrival, after that.
        generation_ns = round((0.02 + 15 / 400.0) * NS_PER_S)
        assert result.t0_ns is not None
        assert result.t0_ns + result.elapsed_ns >= request.received_ns + generation_ns

    async def test_cut_answer_is_truncated(self, sim: OllamaSimulator) -> None:
        """A Content-Length body cut in half is truncated, as a stream cut short is."""
        sim.set_script("m", ModelScript(first_token_delay=0.02, tokens=5, fault=Fault.TRUNCATE))
        result = await probe(sim.url, stream=False)
        assert result.reason is Reason.TRUNCATED, result.detail


class TestSizedPrompt:
    @pytest.mark.parametrize(("api", "tokens"), [("generate", 1000), ("chat", 300),
                                                 ("openai", 2000)])  # fmt: skip
    async def test_server_counts_the_configured_size(
        self, sim: OllamaSimulator, api: str, tokens: int
    ) -> None:
        """prompt_tokens: N reaches the server as N prompt tokens (its prompt_eval_count or
        usage.prompt_tokens), and each run's prompt is fresh."""
        sim.set_script("m", FAST)
        results = [await probe(sim.url, api=api, prompt_tokens=tokens, max_tokens=4)
                   for _ in range(2)]  # fmt: skip
        assert [r.prompt_tokens for r in results] == [tokens, tokens]
        prompts = [str(r.body) for r in sim.requests if r.body is not None]
        assert len(set(prompts)) == 2

    async def test_prefill_is_in_ttft_and_in_the_prefill_rate(self, sim: OllamaSimulator) -> None:
        """A 2000-token prompt at 10k tokens/s prefill: 0.2 s more before the first token,
        and a prefill rate of 10k tokens/s from Ollama's own numbers."""
        sim.set_script("m", ModelScript(first_token_delay=0.02, tokens_per_second=400.0,
                                        tokens=10, prompt_tokens_per_second=10_000.0))  # fmt: skip
        result = await probe(sim.url, prompt_tokens=2000, max_tokens=4)
        assert result.success, result.detail
        assert result.prompt_tokens_per_second == pytest.approx(10_000.0)
        assert result.ttft_ns is not None
        assert result.ttft_ns / NS_PER_S >= 0.02 + 2000 / 10_000.0


class TestKeepAlive:
    async def test_sent_only_when_set(self, sim: OllamaSimulator) -> None:
        """keep_alive is absent by default and sent as written when set; the simulator then
        holds the model for that long (here: unloads it at once)."""
        sim.set_script("m", FAST)
        assert (await probe(sim.url, max_tokens=2)).success
        assert (await probe(sim.url, max_tokens=2, keep_alive=0)).success
        first, second = (r.body for r in sim.requests if r.path == "/api/generate")
        assert "keep_alive" not in first
        assert second["keep_alive"] == 0
        assert not sim.model_state("m").loaded()
