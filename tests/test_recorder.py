"""ProbeResult → metrics, read back from a private registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.recorder import ExporterMetrics, Recorder, new_registry
from exporter.result import JobKey, ProbeResult, Reason, ServerStats

A = JobKey("gpu-box-1", "llama3.2:1b", "short")
B = JobKey("gpu-box-1", "qwen3:0.6b", "short")


def labels(key: JobKey, **extra: str) -> dict[str, str]:
    return {"target": key.target, "model": key.model, "probe": key.probe, **extra}


def ok(key: JobKey = A) -> ProbeResult:
    return ProbeResult(
        job=key, finished_at=1_800_000_123.5, reason=None, elapsed_ns=1_500_000_000,
        ttft_ns=200_000_000, decode_span_ns=1_260_000_000, output_tokens=64, text_chunks=64,
        server=ServerStats(eval_count=64, eval_duration_ns=1_280_000_000, prompt_eval_count=30,
                           prompt_eval_duration_ns=20_000_000, load_duration_ns=3_000_000,
                           done_reason="length"),
    )  # fmt: skip


def fail(reason: Reason, key: JobKey = A) -> ProbeResult:
    return ProbeResult(
        job=key, finished_at=1_800_000_200.0, reason=reason, elapsed_ns=2_000_000_000
    )


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def rec(reg: CollectorRegistry) -> Recorder:
    r = Recorder(reg)
    r.sync_jobs([A, B])
    return r


def test_error_counters_precreated_for_every_reason(reg: CollectorRegistry, rec: Recorder) -> None:
    """Every job x reason error counter exists at 0 before any probe, so rate() sees the first."""
    for key in (A, B):
        for reason in Reason:
            value = reg.get_sample_value(
                "ollama_probe_errors_total", labels(key, reason=reason.value)
            )
            assert value == 0.0
    assert reg.get_sample_value("ollama_probe_runs_total", labels(A)) == 0.0
    # No last-value lies before the first probe, and no error-histogram children.
    assert reg.get_sample_value("ollama_probe_success", labels(A)) is None
    assert reg.get_sample_value("ollama_probe_error_duration_seconds_count",
                                labels(A, reason="truncated")) is None  # fmt: skip


def test_success_observes_every_histogram(reg: CollectorRegistry, rec: Recorder) -> None:
    """A successful probe sets success=1 and observes each definition's value once."""
    assert rec.record(ok())
    g = reg.get_sample_value
    assert g("ollama_probe_success", labels(A)) == 1.0
    assert g("ollama_probe_runs_total", labels(A)) == 1.0
    assert g("ollama_probe_last_run_timestamp_seconds", labels(A)) == 1_800_000_123.5
    assert g("ollama_probe_time_to_first_token_seconds_sum", labels(A)) == pytest.approx(0.2)
    assert g("ollama_probe_tokens_per_second_sum", labels(A)) == pytest.approx(50.0)
    assert g("ollama_probe_time_per_output_token_seconds_sum", labels(A)) == pytest.approx(0.02)
    assert g("ollama_probe_server_tokens_per_second_sum", labels(A)) == pytest.approx(50.0)
    assert g("ollama_probe_prompt_tokens_per_second_sum", labels(A)) == pytest.approx(1500.0)
    assert g("ollama_probe_duration_seconds_sum", labels(A)) == pytest.approx(1.5)
    assert g("ollama_probe_load_duration_seconds_sum", labels(A)) == pytest.approx(0.003)
    assert g("ollama_probe_output_tokens_total", labels(A)) == 64.0
    assert g("ollama_probe_server_eval_seconds_total", labels(A)) == pytest.approx(1.28)
    assert g("ollama_probe_time_to_first_token_seconds_bucket", labels(A, le="0.25")) == 1.0
    assert g("ollama_probe_time_to_first_token_seconds_bucket", labels(A, le="0.1")) == 0.0


def test_failure_counts_reason_and_duration(reg: CollectorRegistry, rec: Recorder) -> None:
    """A failure sets success=0, counts its reason and observes its error duration only."""
    rec.record(ok())
    rec.record(fail(Reason.TIMEOUT_STALL))
    g = reg.get_sample_value
    assert g("ollama_probe_success", labels(A)) == 0.0
    assert g("ollama_probe_runs_total", labels(A)) == 2.0
    assert g("ollama_probe_errors_total", labels(A, reason="timeout_stall")) == 1.0
    assert g("ollama_probe_errors_total", labels(A, reason="truncated")) == 0.0
    assert g("ollama_probe_error_duration_seconds_sum", labels(A, reason="timeout_stall")) == 2.0
    assert g("ollama_probe_time_to_first_token_seconds_count", labels(A)) == 1.0


def test_counters_skip_probes_without_server_counts(reg: CollectorRegistry, rec: Recorder) -> None:
    """Token and eval-seconds counters move together, only when both were reported."""
    r = ProbeResult(job=A, finished_at=0.0, reason=None, elapsed_ns=10, ttft_ns=5,
                    decode_span_ns=4, output_tokens=3, tokens_from_chunks=True,
                    server=ServerStats())  # fmt: skip
    rec.record(r)
    assert reg.get_sample_value("ollama_probe_output_tokens_total", labels(A)) == 0.0
    assert reg.get_sample_value("ollama_probe_server_eval_seconds_total", labels(A)) == 0.0


def test_sync_removes_series_of_dropped_jobs(reg: CollectorRegistry, rec: Recorder) -> None:
    """A job removed by a reload loses every series, error histogram children included."""
    rec.record(fail(Reason.TRUNCATED, B))
    rec.sync_jobs([A])
    text = generate_latest(reg).decode()
    assert 'model="qwen3:0.6b"' not in text
    assert 'model="llama3.2:1b"' in text
    assert not rec.record(ok(B))  # a probe that was in flight during the reload is dropped
    assert 'model="qwen3:0.6b"' not in generate_latest(reg).decode()


def test_no_created_series_and_build_info() -> None:
    """The real registry has no _created series, carries build info and process metrics."""
    reg = new_registry()
    rec = Recorder(reg)
    ExporterMetrics(reg, "1.2.3").config_loaded(True, 1234.0)
    rec.sync_jobs([A])
    rec.record(ok())
    text = generate_latest(reg).decode()
    assert "_created" not in text
    assert reg.get_sample_value("ollama_probe_exporter_build_info", {"version": "1.2.3"}) == 1.0
    assert reg.get_sample_value("ollama_probe_exporter_config_last_reload_successful") == 1.0
    assert (
        reg.get_sample_value("ollama_probe_exporter_config_last_reload_success_timestamp_seconds")
        == 1234.0
    )
    assert "process_cpu_seconds_total" in text or "python_info" in text
