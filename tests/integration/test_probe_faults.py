"""Every failure reason is produced by its fault, over real loopback HTTP; and the payload."""

from __future__ import annotations

import socket
import time

import pytest

from exporter.clock import SystemClock
from exporter.ollama.client import OllamaClient
from exporter.probe import run_probe
from exporter.result import NS_PER_S, Reason
from exporter.simulator import Fault, ModelScript, OllamaSimulator
from tests.support.jobs import make_job, probe_job

FAST = ModelScript(first_token_delay=0.02, tokens_per_second=200.0, tokens=20)
# How late a deadline may be seen to fire on a busy machine. Far below the runner's safety
# margin (5 s), so a deadline that did not fire at all still fails the test.
LATE_S = 1.0


probe = probe_job


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.BUSY, Reason.SERVER_BUSY),
        (Fault.HTTP_500, Reason.HTTP_ERROR),
        (Fault.BARE_404, Reason.HTTP_ERROR),
        (Fault.MID_STREAM_ERROR, Reason.STREAM_ERROR),
        (Fault.TRUNCATE, Reason.TRUNCATED),
        (Fault.END_WITHOUT_DONE, Reason.TRUNCATED),
        (Fault.CLOSE_BEFORE_RESPONSE, Reason.TRUNCATED),
        (Fault.MALFORMED, Reason.INVALID_RESPONSE),
        (Fault.NOT_JSON_OBJECT, Reason.INVALID_RESPONSE),
    ],
)
async def test_fault_gives_its_reason(sim: OllamaSimulator, fault: Fault, reason: Reason) -> None:
    """Each scripted fault ends the probe with exactly its reason."""
    sim.set_script(
        "m",
        ModelScript(
            first_token_delay=0.02, tokens_per_second=200.0, tokens=20, fault=fault, fault_after=3
        ),
    )
    result = await probe(make_job(sim.url, "m", max_tokens=20))
    assert result.reason is reason, result.detail
    assert result.detail


async def test_model_not_found(sim: OllamaSimulator) -> None:
    """Ollama's JSON 404 for an unknown model is model_not_found."""
    result = await probe(make_job(sim.url, "nope:1b"))
    assert result.reason is Reason.MODEL_NOT_FOUND
    assert "nope:1b" in result.detail
    assert result.http_status == 404


async def test_wrong_base_path_is_http_error(sim: OllamaSimulator) -> None:
    """A bare 404 from a wrong path prefix is http_error, not model_not_found."""
    sim.set_script("m", FAST)
    result = await probe(make_job(sim.url + "/wrong-prefix", "m"))
    assert result.reason is Reason.HTTP_ERROR
    assert result.http_status == 404


async def test_empty_response(sim: OllamaSimulator) -> None:
    """A done chunk with nothing generated before it is empty_response."""
    sim.set_script("m", ModelScript(first_token_delay=0.02, tokens=0))
    result = await probe(make_job(sim.url, "m"))
    assert result.reason is Reason.EMPTY_RESPONSE


async def test_connect_error() -> None:
    """Nothing listening: connect_error, quickly."""
    result = await probe(make_job(f"http://127.0.0.1:{closed_port()}", "m"))
    assert result.reason is Reason.CONNECT_ERROR
    assert result.elapsed_ns < 2 * NS_PER_S


async def test_tls_error(sim: OllamaSimulator) -> None:
    """Speaking TLS to a plain-HTTP port fails the handshake: tls_error, not connect_error."""
    sim.set_script("m", FAST)
    result = await probe(make_job(sim.url.replace("http://", "https://"), "m"))
    assert result.reason is Reason.TLS_ERROR, result.detail


async def test_timeout_first_token(sim: OllamaSimulator) -> None:
    """Silence past `timeout` before any token (a cold load) is timeout_first_token at ~timeout."""
    sim.set_script("m", ModelScript(first_token_delay=3.0))
    started_ns = time.monotonic_ns()
    result = await probe(make_job(sim.url, "m", timeout="400ms", stall_timeout="200ms"))
    # The deadline is armed when the probe begins; elapsed counts from t0, the connect start,
    # which a busy loop reaches a little later. So the probe ended at least the timeout after
    # it began, and what it reports is at most the timeout plus lateness.
    assert result.reason is Reason.TIMEOUT_FIRST_TOKEN
    assert result.t0_ns is not None
    assert result.t0_ns + result.elapsed_ns >= started_ns + 0.4 * NS_PER_S
    assert result.elapsed_ns / NS_PER_S <= 0.4 + LATE_S


async def test_timeout_stall(sim: OllamaSimulator) -> None:
    """A gap longer than stall_timeout after tokens began is timeout_stall, at gap start + limit."""
    sim.set_script(
        "m",
        ModelScript(
            first_token_delay=0.05,
            tokens_per_second=100.0,
            tokens=20,
            fault=Fault.STALL,
            fault_after=3,
            stall_seconds=3.0,
        ),
    )
    result = await probe(make_job(sim.url, "m", timeout="10s", stall_timeout="300ms"))
    assert result.reason is Reason.TIMEOUT_STALL, result.detail
    # Third chunk at 0.05 + 2/100 = 0.07 s, then 0.3 s of silence.
    assert 0.37 <= result.elapsed_ns / NS_PER_S <= 0.37 + LATE_S
    assert result.ttft_ns is not None


async def test_timeout_total(sim: OllamaSimulator) -> None:
    """Steady tokens that never finish within `timeout` are timeout_total, at ~timeout."""
    sim.set_script("m", ModelScript(first_token_delay=0.05, tokens_per_second=10.0, tokens=100))
    started_ns = time.monotonic_ns()
    result = await probe(
        make_job(sim.url, "m", max_tokens=100, timeout="600ms", stall_timeout="500ms")
    )
    assert result.reason is Reason.TIMEOUT_TOTAL, result.detail
    # Armed at the start; elapsed counts from connect (as above).
    assert result.t0_ns is not None
    assert result.t0_ns + result.elapsed_ns >= started_ns + 0.6 * NS_PER_S
    assert result.elapsed_ns / NS_PER_S <= 0.6 + LATE_S


async def test_failures_release_connections(sim: OllamaSimulator) -> None:
    """After stalls, truncations and timeouts on one client (pool of 2), a probe still succeeds:
    no failed probe kept its connection."""
    job = make_job(sim.url, "m", max_tokens=5, timeout="300ms", stall_timeout="100ms")
    client = OllamaClient(job.target)
    try:
        faults = [
            ModelScript(first_token_delay=2.0),
            ModelScript(
                first_token_delay=0.01,
                tokens=20,
                fault=Fault.STALL,
                fault_after=2,
                stall_seconds=2.0,
            ),
            ModelScript(first_token_delay=0.01, tokens=20, fault=Fault.TRUNCATE, fault_after=2),
        ] * 2
        for script in faults:
            sim.set_script("m", script)
            assert not (await run_probe(client, job, SystemClock())).success
        sim.set_script("m", ModelScript(first_token_delay=0.01, tokens=5, tokens_per_second=200.0))
        result = await run_probe(client, job, SystemClock())
        assert result.success, result.detail
    finally:
        await client.aclose()


async def test_request_payload(sim: OllamaSimulator) -> None:
    """The probe streams, sends max_tokens as num_predict with the profile's options, a
    nonce-prefixed prompt that differs per probe, and no keep_alive."""
    sim.set_script("m", ModelScript(first_token_delay=0.01, tokens=3, tokens_per_second=500.0))
    job = make_job(sim.url, "m", max_tokens=3, think=False, options={"temperature": 0, "seed": 7})
    for _ in range(3):
        assert (await probe(job)).success
    bodies = [r.body for r in sim.requests if r.path == "/api/generate"]
    assert len(bodies) == 3
    for body in bodies:
        assert body["stream"] is True
        assert body["think"] is False
        assert body["options"] == {"temperature": 0, "seed": 7, "num_predict": 3}
        assert "keep_alive" not in body
    prompts = {b["prompt"] for b in bodies}
    assert len(prompts) == 3
    assert all(p.startswith("[") for p in prompts)
