"""The recorder as it was before pre-rendering: prometheus-client's metric classes, rendered
sample by sample at every scrape. The scrape benchmark runs it beside the exporter's, in the
same invocation, with the same buckets (``exporter.buckets``), so the ratio is the rendering
alone. A copy of ``exporter/recorder.py`` at 1c032bf, its ``ExporterMetrics`` left out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from exporter.buckets import (
    DURATION_BUCKETS,
    ERROR_DURATION_BUCKETS,
    PROMPT_TOKENS_PER_SECOND_BUCKETS,
    TOKENS_PER_SECOND_BUCKETS,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
)
from exporter.result import NS_PER_S, Inventory, JobKey, ProbeResult, Reason, SkipReason

LABELS = ("target", "model", "probe")
STREAM_LABELS = (*LABELS, "parallel")
MODEL_LABELS = ("target", "model")


class ProbeMetrics:
    """The metric families, registered on an injected registry (never the global one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def hist(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, STREAM_LABELS, buckets=buckets, registry=registry)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, LABELS, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = LABELS) -> Gauge:
            return Gauge(name, doc, labels, registry=registry)

        self.success = gauge(
            "ollama_probe_success",
            "1 if the last scheduled run of this job succeeded (every stream of it), 0 if it "
            "failed; a skipped run leaves it as it was.",
        )
        self.runs = counter(
            "ollama_probe_runs",
            "Probes finished, successful or not (a run of a parallel profile is that many).",
        )
        self.errors = Counter(
            "ollama_probe_errors",
            "Failed probes by reason (closed set; see the README).",
            (*LABELS, "reason"), registry=registry,
        )  # fmt: skip
        self.error_duration = Histogram(
            "ollama_probe_error_duration_seconds",
            "Time from request start until a failed probe failed.",
            (*LABELS, "reason"), buckets=ERROR_DURATION_BUCKETS, registry=registry,
        )  # fmt: skip
        self.skipped = Counter(
            "ollama_probe_skipped",
            "Runs that sent no generation, by reason: not_loaded (when: if_loaded, and "
            "/api/ps did not list the model). Neither a success nor an error.",
            (*LABELS, "reason"), registry=registry,
        )  # fmt: skip
        self.ttft = hist(
            "ollama_probe_time_to_first_token_seconds",
            "Successful streamed probes: request start (connect included) to the arrival of "
            "the first chunk with non-empty generated text, thinking included (client TTFT).",
            TTFT_BUCKETS,
        )
        self.ttfct = hist(
            "ollama_probe_time_to_first_content_token_seconds",
            "Successful streamed probes: request start (connect included) to the arrival of "
            "the first chunk with non-empty answer text, thinking excluded.",
            TTFT_BUCKETS,
        )
        self.tokens_per_second = hist(
            "ollama_probe_tokens_per_second",
            "Successful streamed probes: client-observed decode rate, (eval_count - 1) / "
            "(t_last_token - t_first_token).",
            TOKENS_PER_SECOND_BUCKETS,
        )
        self.server_tokens_per_second = hist(
            "ollama_probe_server_tokens_per_second",
            "Successful probes: decode rate reported by Ollama, eval_count / eval_duration.",
            TOKENS_PER_SECOND_BUCKETS,
        )
        self.prompt_tokens_per_second = hist(
            "ollama_probe_prompt_tokens_per_second",
            "Successful probes: prefill rate reported by Ollama, prompt_eval_count / "
            "prompt_eval_duration (cache hits counted, so optimistic).",
            PROMPT_TOKENS_PER_SECOND_BUCKETS,
        )
        self.tpot = hist(
            "ollama_probe_time_per_output_token_seconds",
            "Successful streamed probes: (t_last_token - t_first_token) / (eval_count - 1), "
            "decode time per token with the first token excluded (vLLM per-request TPOT).",
            TPOT_BUCKETS,
        )
        self.duration = hist(
            "ollama_probe_duration_seconds",
            "Successful probes: request start to the arrival of the final chunk (or of the "
            "whole answer, when not streamed).",
            DURATION_BUCKETS,
        )
        self.load_duration = hist(
            "ollama_probe_load_duration_seconds",
            "Successful probes: load_duration reported by Ollama (queue, evictions and model "
            "load; milliseconds when warm, seconds on a cold load).",
            TTFT_BUCKETS,
        )
        self.parallel_tokens_per_second = hist(
            "ollama_probe_parallel_tokens_per_second",
            "Successful runs of parallel profiles: generated tokens of all streams over the "
            "run's wall time, sum(eval_count) / (last t_done - first t0).",
            TOKENS_PER_SECOND_BUCKETS,
        )
        self.output_tokens = counter(
            "ollama_probe_output_tokens",
            "Sum of eval_count over successful probes that reported eval_count and "
            "eval_duration; rate() of this over rate() of server_eval_seconds is decode tok/s.",
        )
        self.server_eval_seconds = counter(
            "ollama_probe_server_eval_seconds",
            "Sum of eval_duration over the same probes as ollama_probe_output_tokens_total.",
        )
        self.prompt_tokens = gauge(
            "ollama_probe_prompt_tokens",
            "Prompt tokens as the server counted them (prompt_eval_count, or "
            "usage.prompt_tokens) in the last successful probe.",
        )
        self.last_run = gauge(
            "ollama_probe_last_run_timestamp_seconds",
            "Unix time the last scheduled run of this job finished (a skipped one included).",
        )
        self.model_loaded = gauge(
            "ollama_probe_model_loaded",
            "1 if /api/ps listed the model before the last run on its target, else 0.",
            MODEL_LABELS,
        )
        self.model_size = gauge(
            "ollama_probe_model_size_bytes",
            "Memory the loaded model takes (/api/ps size: weights and KV cache); 0 if not loaded.",
            MODEL_LABELS,
        )
        self.model_vram = gauge(
            "ollama_probe_model_vram_bytes",
            "Part of that memory in GPU memory (/api/ps size_vram); 0 if not loaded.",
            MODEL_LABELS,
        )
        self.model_partial_offload = gauge(
            "ollama_probe_model_partial_offload",
            "1 if the loaded model is partly on the CPU (size_vram < size), else 0.",
            MODEL_LABELS,
        )

    def per_job(self) -> tuple[MetricWrapperBase, ...]:
        """Families labelled by job only (no reason, no parallel)."""
        return (self.success, self.runs, self.output_tokens, self.server_eval_seconds,
                self.prompt_tokens, self.last_run)  # fmt: skip

    def per_stream(self) -> tuple[Histogram, ...]:
        """Families labelled by job and parallel."""
        return (self.ttft, self.ttfct, self.tokens_per_second, self.server_tokens_per_second,
                self.prompt_tokens_per_second, self.tpot, self.duration, self.load_duration,
                self.parallel_tokens_per_second)  # fmt: skip

    def per_model(self) -> tuple[Gauge, ...]:
        return (self.model_loaded, self.model_size, self.model_vram, self.model_partial_offload)

    def precreated(self, key: JobKey) -> list[MetricWrapperBase]:
        """The families a job's series exist in from start-up, so rate() sees the first event.

        Only those the job can ever observe (its ``JobShape``): a series that could never
        move would only mislead. Not ``success``, ``last_run`` nor ``prompt_tokens``: a value
        before the first probe would be a lie. Not the error histogram: 12 reasons x its
        buckets for nothing.
        """
        shape = key.shape
        families: list[MetricWrapperBase] = [self.runs, self.duration]
        if shape.streamed:
            families += [self.ttft, self.ttfct, self.tokens_per_second, self.tpot]
        if shape.server_timings:
            families += [self.server_tokens_per_second, self.prompt_tokens_per_second,
                         self.load_duration, self.output_tokens,
                         self.server_eval_seconds]  # fmt: skip
        if shape.parallel > 1:
            families.append(self.parallel_tokens_per_second)
        return families


def _job(key: JobKey) -> tuple[str, str, str]:
    return (key.target, key.model, key.probe)


def _stream(key: JobKey) -> tuple[str, str, str, str]:
    return (key.target, key.model, key.probe, str(key.shape.parallel))


def _seconds(ns: int | None) -> float | None:
    return None if ns is None else ns / NS_PER_S


class Recorder:
    """Applies finished runs to the metrics, and keeps the series in line with the config."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.metrics = ProbeMetrics(registry)
        self._jobs: frozenset[JobKey] = frozenset()
        self._models: frozenset[tuple[str, str]] = frozenset()

    def sync_jobs(self, jobs: Iterable[JobKey]) -> None:
        """Pre-create series for configured jobs; drop every series of jobs no longer there."""
        new = frozenset(jobs)
        m = self.metrics
        for key in self._jobs - new:
            for family in m.per_job():
                _remove(family, _job(key))
            for histogram in m.per_stream():
                _remove(histogram, _stream(key))
            labels = _job(key)
            for reason in Reason:
                _remove(m.errors, (*labels, reason.value))
                _remove(m.error_duration, (*labels, reason.value))
            for skip in SkipReason:
                _remove(m.skipped, (*labels, skip.value))
        for key in new - self._jobs:
            for family in m.precreated(key):
                family.labels(*(_stream(key) if family in m.per_stream() else _job(key)))
            labels = _job(key)
            for reason in Reason:
                m.errors.labels(*labels, reason.value)
            if key.shape.skippable:
                for skip in SkipReason:
                    m.skipped.labels(*labels, skip.value)
        self._jobs = new
        models = frozenset((key.target, key.model) for key in new)
        for pair in self._models - models:
            for gauge in m.per_model():
                _remove(gauge, pair)
        self._models = models

    def record(self, result: ProbeResult) -> bool:
        """Apply one run's result; False (and nothing recorded) if its job left the config."""
        key = result.job
        if key not in self._jobs:
            return False
        m = self.metrics
        labels = _job(key)
        if result.inventory is not None:
            self._inventory(result.inventory)
        m.last_run.labels(*labels).set(result.finished_at)
        if result.skipped is not None:
            m.skipped.labels(*labels, result.skipped.value).inc()
            return True
        for stream in result.streams or (result,):
            self._probe(stream, key)
        m.success.labels(*labels).set(1 if result.reason is None else 0)
        aggregate = result.parallel_tokens_per_second
        if aggregate is not None:
            m.parallel_tokens_per_second.labels(*_stream(key)).observe(aggregate)
        return True

    def _probe(self, result: ProbeResult, key: JobKey) -> None:
        """One generation: counted, and observed by reason or by its measurements."""
        m = self.metrics
        labels = _job(key)
        m.runs.labels(*labels).inc()
        if result.reason is not None:
            m.errors.labels(*labels, result.reason.value).inc()
            m.error_duration.labels(*labels, result.reason.value).observe(
                result.elapsed_ns / NS_PER_S
            )
            return
        self._observe_success(result, key)

    def _observe_success(self, result: ProbeResult, key: JobKey) -> None:
        m = self.metrics
        labels, stream = _job(key), _stream(key)
        m.duration.labels(*stream).observe(result.elapsed_ns / NS_PER_S)
        optional = (
            (m.ttft, _seconds(result.ttft_ns)),
            (m.ttfct, _seconds(result.ttfct_ns)),
            (m.tokens_per_second, result.tokens_per_second),
            (m.tpot, result.time_per_output_token_seconds),
            (m.server_tokens_per_second, result.server_tokens_per_second),
            (m.prompt_tokens_per_second, result.prompt_tokens_per_second),
        )
        for family, value in optional:
            if value is not None:
                family.labels(*stream).observe(value)
        if result.prompt_tokens is not None:
            m.prompt_tokens.labels(*labels).set(result.prompt_tokens)
        server = result.server
        if server is not None and server.timings:
            m.load_duration.labels(*stream).observe(server.load_duration_ns / NS_PER_S)
            if server.eval_count > 0 and server.eval_duration_ns > 0:
                m.output_tokens.labels(*labels).inc(server.eval_count)
                m.server_eval_seconds.labels(*labels).inc(server.eval_duration_ns / NS_PER_S)

    def _inventory(self, inventory: Inventory) -> None:
        """The target's configured models as /api/ps listed them; unknown (no series) when
        it could not be read: "not loaded" would be a claim nobody checked."""
        m = self.metrics
        if inventory.models is None:
            for target, model in self._models:
                if target == inventory.target:
                    for gauge in m.per_model():
                        _remove(gauge, (target, model))
            return
        for entry in inventory.models:
            pair = (inventory.target, entry.model)
            if pair not in self._models:
                continue
            m.model_loaded.labels(*pair).set(1 if entry.loaded else 0)
            m.model_size.labels(*pair).set(entry.size_bytes)
            m.model_vram.labels(*pair).set(entry.vram_bytes)
            m.model_partial_offload.labels(*pair).set(1 if entry.partial_offload else 0)


def _remove(family: MetricWrapperBase, labels: tuple[str, ...]) -> None:
    # KeyError: never created (e.g. an error histogram child for a reason never seen).
    with contextlib.suppress(KeyError):
        family.remove(*labels)
