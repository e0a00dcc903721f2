"""ProbeResult → metrics, read back from a private registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter.recorder import ExporterMetrics, Recorder, new_registry
from exporter.result import (
    Inventory,
    JobKey,
    JobShape,
    ProbeResult,
    Reason,
    Residency,
    ServerStats,
    SkipReason,
)

A = JobKey("gpu-box-1", "llama3.2:1b", "short")
B = JobKey("gpu-box-1", "qwen3:0.6b", "short")
PAR = JobKey("gpu-box-1", "llama3.2:1b", "par4", JobShape(parallel=4))
V1 = JobKey("gpu-box-1", "llama3.2:1b", "v1", JobShape(server_timings=False))
WHOLE = JobKey("gpu-box-1", "llama3.2:1b", "whole", JobShape(streamed=False))
IF_LOADED = JobKey("gpu-box-1", "qwen3:0.6b", "polite", JobShape(skippable=True))


def labels(key: JobKey, **extra: str) -> dict[str, str]:
    return {"target": key.target, "model": key.model, "probe": key.probe, **extra}


def stream_labels(key: JobKey, **extra: str) -> dict[str, str]:
    """The labels of the per-generation histograms: the job's and ``parallel``."""
    return labels(key, parallel=str(key.shape.parallel), **extra)


def ok(key: JobKey = A, **fields: object) -> ProbeResult:
    """A successful probe: 0.2 s to the first token, 0.3 s to the first answer token,
    64 tokens decoded at 50 tokens/s, a 1.5 s whole."""
    result = ProbeResult(
        job=key, finished_at=1_800_000_123.5, reason=None, elapsed_ns=1_500_000_000,
        ttft_ns=200_000_000, ttfct_ns=300_000_000, decode_span_ns=1_260_000_000,
        output_tokens=64, text_chunks=64, t0_ns=0,
        server=ServerStats(eval_count=64, eval_duration_ns=1_280_000_000, prompt_eval_count=30,
                           prompt_eval_duration_ns=20_000_000, load_duration_ns=3_000_000,
                           done_reason="length"),
    )  # fmt: skip
    return dataclasses.replace(result, **fields)  # type: ignore[arg-type]


def fail(reason: Reason, key: JobKey = A) -> ProbeResult:
    return ProbeResult(
        job=key, finished_at=1_800_000_200.0, reason=reason, elapsed_ns=2_000_000_000
    )


def snapshot(reg: CollectorRegistry) -> Callable[[str, dict[str, str]], float | None]:
    """Every sample of one collection, read many times. ``get_sample_value`` collects the
    whole registry at each call: a few hundred reads of a six-job recorder took 0.6 s."""
    values = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in reg.collect()
        for sample in family.samples
    }
    return lambda name, labels: values.get((name, frozenset(labels.items())))


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def rec(reg: CollectorRegistry) -> Recorder:
    r = Recorder(reg)
    r.sync_jobs([A, B, PAR, V1, WHOLE, IF_LOADED])
    return r


def test_error_counters_precreated_for_every_reason(reg: CollectorRegistry, rec: Recorder) -> None:
    """Every job x reason error counter exists at 0 before any probe, so rate() sees the first."""
    g = snapshot(reg)
    for key in (A, B):
        for reason in Reason:
            assert g("ollama_probe_errors_total", labels(key, reason=reason.value)) == 0.0
    assert g("ollama_probe_runs_total", labels(A)) == 0.0
    # No last-value lies before the first probe, and no error-histogram children.
    assert g("ollama_probe_success", labels(A)) is None
    assert g("ollama_probe_error_duration_seconds_count", labels(A, reason="truncated")) is None


def test_success_observes_every_histogram(reg: CollectorRegistry, rec: Recorder) -> None:
    """A successful probe sets success=1 and observes each definition's value once."""
    assert rec.record(ok())
    g = snapshot(reg)
    assert g("ollama_probe_success", labels(A)) == 1.0
    assert g("ollama_probe_runs_total", labels(A)) == 1.0
    assert g("ollama_probe_last_run_timestamp_seconds", labels(A)) == 1_800_000_123.5
    assert g("ollama_probe_prompt_tokens", labels(A)) == 30.0
    h = {
        "time_to_first_token_seconds": 0.2,
        "time_to_first_content_token_seconds": 0.3,
        "tokens_per_second": 50.0,
        "time_per_output_token_seconds": 0.02,
        "server_tokens_per_second": 50.0,
        "prompt_tokens_per_second": 1500.0,
        "duration_seconds": 1.5,
        "load_duration_seconds": 0.003,
    }
    for name, value in h.items():
        assert g(f"ollama_probe_{name}_sum", stream_labels(A)) == pytest.approx(value), name
        assert g(f"ollama_probe_{name}_count", stream_labels(A)) == 1.0, name
    assert g("ollama_probe_output_tokens_total", labels(A)) == 64.0
    assert g("ollama_probe_server_eval_seconds_total", labels(A)) == pytest.approx(1.28)
    ttft = "ollama_probe_time_to_first_token_seconds_bucket"
    assert g(ttft, stream_labels(A, le="0.25")) == 1.0
    assert g(ttft, stream_labels(A, le="0.1")) == 0.0
    assert g("ollama_probe_parallel_tokens_per_second_count", stream_labels(A)) is None


def test_failure_counts_reason_and_duration(reg: CollectorRegistry, rec: Recorder) -> None:
    """A failure sets success=0, counts its reason and observes its error duration only."""
    rec.record(ok())
    rec.record(fail(Reason.TIMEOUT_STALL))
    g = snapshot(reg)
    assert g("ollama_probe_success", labels(A)) == 0.0
    assert g("ollama_probe_runs_total", labels(A)) == 2.0
    assert g("ollama_probe_errors_total", labels(A, reason="timeout_stall")) == 1.0
    assert g("ollama_probe_errors_total", labels(A, reason="truncated")) == 0.0
    assert g("ollama_probe_error_duration_seconds_sum", labels(A, reason="timeout_stall")) == 2.0
    assert g("ollama_probe_time_to_first_token_seconds_count", stream_labels(A)) == 1.0
    assert g("ollama_probe_prompt_tokens", labels(A)) == 30.0  # the last *successful* probe


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


def streams_of(key: JobKey, *results: ProbeResult) -> ProbeResult:
    """A parallel run's summary holding ``results``."""
    failed = [r for r in results if r.reason is not None]
    return ProbeResult(job=key, finished_at=5.0, reason=failed[0].reason if failed else None,
                       streams=results)  # fmt: skip


class TestShapes:
    def test_series_exist_only_where_they_can_move(self, reg: CollectorRegistry,
                                                   rec: Recorder) -> None:  # fmt: skip
        """Before any probe: /v1 jobs have no server-timing series, unstreamed jobs no TTFT
        nor client rate, only parallel jobs an aggregate, only if_loaded jobs a skip counter."""
        g = snapshot(reg)
        count = "ollama_probe_{}_count"
        assert g(count.format("server_tokens_per_second"), stream_labels(A)) == 0.0
        assert g(count.format("server_tokens_per_second"), stream_labels(V1)) is None
        assert g(count.format("load_duration_seconds"), stream_labels(V1)) is None
        assert g("ollama_probe_output_tokens_total", labels(V1)) is None
        assert g(count.format("time_to_first_token_seconds"), stream_labels(V1)) == 0.0
        assert g(count.format("time_to_first_token_seconds"), stream_labels(WHOLE)) is None
        assert g(count.format("time_to_first_content_token_seconds"), stream_labels(WHOLE)) is None
        assert g(count.format("tokens_per_second"), stream_labels(WHOLE)) is None
        assert g(count.format("duration_seconds"), stream_labels(WHOLE)) == 0.0
        assert g(count.format("parallel_tokens_per_second"), stream_labels(PAR)) == 0.0
        assert g(count.format("parallel_tokens_per_second"), stream_labels(A)) is None
        skipped = "ollama_probe_skipped_total"
        assert g(skipped, labels(IF_LOADED, reason="not_loaded")) == 0.0
        assert g(skipped, labels(A, reason="not_loaded")) is None

    def test_openai_probe_observes_no_server_timings(self, reg: CollectorRegistry,
                                                     rec: Recorder) -> None:  # fmt: skip
        """Counts only (usage): prompt tokens and client timings, but no load duration, no
        server rates and no token counters (they need eval_duration)."""
        usage = ServerStats(eval_count=64, prompt_eval_count=1000, timings=False)
        rec.record(ok(V1, server=usage))
        g = snapshot(reg)
        assert g("ollama_probe_prompt_tokens", labels(V1)) == 1000.0
        assert g("ollama_probe_tokens_per_second_count", stream_labels(V1)) == 1.0
        assert g("ollama_probe_load_duration_seconds_count", stream_labels(V1)) is None
        assert g("ollama_probe_server_tokens_per_second_count", stream_labels(V1)) is None
        assert g("ollama_probe_output_tokens_total", labels(V1)) is None


class TestParallel:
    def test_each_stream_is_a_probe_and_the_run_an_aggregate(
        self, reg: CollectorRegistry, rec: Recorder
    ) -> None:
        """Four streams: four probes in runs_total and in every histogram (parallel="4"),
        one success, one aggregate rate."""
        streams = [ok(PAR, t0_ns=i * 10_000_000) for i in range(4)]
        assert rec.record(streams_of(PAR, *streams))
        g = snapshot(reg)
        assert g("ollama_probe_runs_total", labels(PAR)) == 4.0
        assert g("ollama_probe_success", labels(PAR)) == 1.0
        assert g("ollama_probe_time_to_first_token_seconds_count", stream_labels(PAR)) == 4.0
        assert g("ollama_probe_output_tokens_total", labels(PAR)) == 256.0
        # 256 tokens from the first start (0) to the last end (30 ms + 1.5 s).
        assert g("ollama_probe_parallel_tokens_per_second_sum", stream_labels(PAR)) == (
            pytest.approx(256 / 1.53))  # fmt: skip
        assert g("ollama_probe_parallel_tokens_per_second_count", stream_labels(PAR)) == 1.0

    def test_one_failed_stream_fails_the_run(self, reg: CollectorRegistry, rec: Recorder) -> None:
        """Three good streams and one truncated: 4 probes, 1 error, success 0, no aggregate."""
        bad = fail(Reason.TRUNCATED, PAR)
        rec.record(streams_of(PAR, ok(PAR), ok(PAR), bad, ok(PAR)))
        g = snapshot(reg)
        assert g("ollama_probe_runs_total", labels(PAR)) == 4.0
        assert g("ollama_probe_errors_total", labels(PAR, reason="truncated")) == 1.0
        assert g("ollama_probe_success", labels(PAR)) == 0.0
        assert g("ollama_probe_duration_seconds_count", stream_labels(PAR)) == 3.0
        assert g("ollama_probe_parallel_tokens_per_second_count", stream_labels(PAR)) == 0.0


class TestSkips:
    def test_skip_is_neither_success_nor_error(self, reg: CollectorRegistry, rec: Recorder) -> None:
        """A skipped run counts in skipped_total and last_run only; success stays as it was."""
        rec.record(ok(IF_LOADED))
        skip = ProbeResult(job=IF_LOADED, finished_at=9.0, reason=None,
                           skipped=SkipReason.NOT_LOADED)  # fmt: skip
        rec.record(skip)
        rec.record(skip)
        g = snapshot(reg)
        assert g("ollama_probe_skipped_total", labels(IF_LOADED, reason="not_loaded")) == 2.0
        assert g("ollama_probe_runs_total", labels(IF_LOADED)) == 1.0
        assert g("ollama_probe_success", labels(IF_LOADED)) == 1.0
        assert g("ollama_probe_last_run_timestamp_seconds", labels(IF_LOADED)) == 9.0
        assert sum(g("ollama_probe_errors_total", labels(IF_LOADED, reason=r.value)) or 0
                   for r in Reason) == 0  # fmt: skip


class TestInventory:
    def inventory(self, *models: Residency) -> Inventory:
        return Inventory("gpu-box-1", models)

    def test_configured_models_get_their_residency(
        self, reg: CollectorRegistry, rec: Recorder
    ) -> None:
        """loaded, sizes and partial offload per (target, model); an unknown model is ignored."""
        inventory = self.inventory(
            Residency("llama3.2:1b", True, size_bytes=1000, vram_bytes=400),
            Residency("qwen3:0.6b", False),
            Residency("not-configured", True, 5, 5),
        )
        rec.record(ok(A, inventory=inventory))
        g = snapshot(reg)
        llama, qwen = {"target": "gpu-box-1", "model": "llama3.2:1b"}, {
            "target": "gpu-box-1", "model": "qwen3:0.6b"}  # fmt: skip
        assert g("ollama_probe_model_loaded", llama) == 1.0
        assert g("ollama_probe_model_size_bytes", llama) == 1000.0
        assert g("ollama_probe_model_vram_bytes", llama) == 400.0
        assert g("ollama_probe_model_partial_offload", llama) == 1.0
        assert (g("ollama_probe_model_loaded", qwen), g("ollama_probe_model_size_bytes", qwen)) == (
            0.0, 0.0)  # fmt: skip
        assert g("ollama_probe_model_loaded", {"target": "gpu-box-1",
                                               "model": "not-configured"}) is None  # fmt: skip

    def test_unreadable_inventory_is_unknown(self, reg: CollectorRegistry, rec: Recorder) -> None:
        """When /api/ps could not be read the residency series go away (unknown, not 0)."""
        rec.record(ok(A, inventory=self.inventory(Residency("llama3.2:1b", True, 10, 10))))
        unknown = Inventory("gpu-box-1", None)
        rec.record(ProbeResult(job=A, finished_at=3.0, reason=Reason.CONNECT_ERROR,
                               inventory=unknown))  # fmt: skip
        assert "ollama_probe_model_loaded{" not in generate_latest(reg).decode()

    def test_series_follow_the_configured_models(
        self, reg: CollectorRegistry, rec: Recorder
    ) -> None:
        """A model that leaves the config loses its residency series."""
        rec.record(ok(A, inventory=self.inventory(Residency("llama3.2:1b", True, 10, 10),
                                                  Residency("qwen3:0.6b", True, 10, 10))))  # fmt: skip
        rec.sync_jobs([A])
        text = generate_latest(reg).decode()
        assert 'ollama_probe_model_loaded{model="llama3.2:1b"' in text
        assert 'ollama_probe_model_loaded{model="qwen3:0.6b"' not in text

    def test_a_new_shape_replaces_the_old_series(
        self, reg: CollectorRegistry, rec: Recorder
    ) -> None:
        """A reload that makes a profile parallel: the job's parallel="1" series go, the
        parallel="4" ones come."""
        rec.sync_jobs([A])
        rec.record(ok(A))
        reshaped = JobKey(A.target, A.model, A.probe, JobShape(parallel=4))
        rec.sync_jobs([reshaped])
        g = snapshot(reg)
        assert g("ollama_probe_duration_seconds_count", stream_labels(A)) is None
        assert g("ollama_probe_duration_seconds_count", stream_labels(reshaped)) == 0.0
