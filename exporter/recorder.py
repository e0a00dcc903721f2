"""ProbeResult → Prometheus metrics: the only module that defines metrics.

Every probe metric carries ``target``, ``model`` and ``probe``, whose values come from config
only, so cardinality is bounded by config. Values come from the last scheduled probes, not
from the scrape: a scrape never triggers or waits for a probe.

Histograms, not last-value gauges: a scrape would see only the latest probe, quantiles would
be impossible and one outlier would fire an alert. Buckets live in ``exporter.buckets``.

Sample exposition::

    ollama_probe_time_to_first_token_seconds_bucket{le="0.25",model="m",probe="p",target="t"} 12.0
    ollama_probe_errors_total{model="m",probe="p",reason="timeout_stall",target="t"} 0.0
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.metrics import MetricWrapperBase

from exporter.buckets import (
    DURATION_BUCKETS,
    ERROR_DURATION_BUCKETS,
    PROMPT_TOKENS_PER_SECOND_BUCKETS,
    TOKENS_PER_SECOND_BUCKETS,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
)
from exporter.result import NS_PER_S, JobKey, ProbeResult, Reason

LABELS = ("target", "model", "probe")


def new_registry() -> CollectorRegistry:
    """A private registry with the process and Python collectors, and no ``_created`` series.

    ``disable_created_metrics`` is a process-wide switch in prometheus-client; the
    ``_created`` series would double the counter series for nothing Prometheus uses.
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class ExporterMetrics:
    """Metrics about the exporter itself: version and config reloads (as blackbox_exporter)."""

    def __init__(self, registry: CollectorRegistry, version: str) -> None:
        Gauge(
            "ollama_probe_exporter_build_info",
            "Always 1; the version label is the running exporter's version.",
            ["version"], registry=registry,
        ).labels(version).set(1)  # fmt: skip
        self.reload_ok = Gauge(
            "ollama_probe_exporter_config_last_reload_successful",
            "1 if the last configuration load or reload succeeded, 0 if it was refused.",
            registry=registry,
        )
        self.reload_time = Gauge(
            "ollama_probe_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load or reload.",
            registry=registry,
        )

    def config_loaded(self, ok: bool, when: float) -> None:
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_time.set(when)


class ProbeMetrics:
    """The metric families, registered on an injected registry (never the global one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def hist(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, LABELS, buckets=buckets, registry=registry)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, LABELS, registry=registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, LABELS, registry=registry)

        self.success = gauge(
            "ollama_probe_success",
            "1 if the last scheduled probe of this job succeeded, 0 if it failed.",
        )
        self.runs = counter(
            "ollama_probe_runs",
            "Probes finished, successful or not.",
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
        self.ttft = hist(
            "ollama_probe_time_to_first_token_seconds",
            "Successful probes: request start (connect included) to the arrival of the first "
            "chunk with non-empty generated text, thinking included (client-side TTFT).",
            TTFT_BUCKETS,
        )
        self.tokens_per_second = hist(
            "ollama_probe_tokens_per_second",
            "Successful probes: client-observed decode rate, (eval_count - 1) / "
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
            "Successful probes: (t_last_token - t_first_token) / (eval_count - 1), decode time "
            "per token with the first token excluded (vLLM per-request TPOT).",
            TPOT_BUCKETS,
        )
        self.duration = hist(
            "ollama_probe_duration_seconds",
            "Successful probes: request start to the arrival of the done chunk.",
            DURATION_BUCKETS,
        )
        self.load_duration = hist(
            "ollama_probe_load_duration_seconds",
            "Successful probes: load_duration reported by Ollama (queue, evictions and model "
            "load; milliseconds when warm, seconds on a cold load).",
            TTFT_BUCKETS,
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
        self.last_run = gauge(
            "ollama_probe_last_run_timestamp_seconds",
            "Unix time the last scheduled probe of this job finished.",
        )

    def per_job(self) -> tuple[MetricWrapperBase, ...]:
        """Families labelled by job only (no reason)."""
        return (self.success, self.runs, self.ttft, self.tokens_per_second,
                self.server_tokens_per_second, self.prompt_tokens_per_second, self.tpot,
                self.duration, self.load_duration, self.output_tokens,
                self.server_eval_seconds, self.last_run)  # fmt: skip

    def precreated(self) -> tuple[MetricWrapperBase, ...]:
        """Families whose children exist from start-up, so rate() sees the first event.

        Not ``success`` nor ``last_run``: a 0 or a timestamp before the first probe would be
        a lie. Not the error histogram: 12 reasons x its buckets for nothing.
        """
        return tuple(m for m in self.per_job() if m not in (self.success, self.last_run))


class Recorder:
    """Applies finished probes to the metrics, and keeps the series in line with the config."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.metrics = ProbeMetrics(registry)
        self._jobs: frozenset[JobKey] = frozenset()

    def sync_jobs(self, jobs: Iterable[JobKey]) -> None:
        """Pre-create series for configured jobs; drop every series of jobs no longer there."""
        new = frozenset(jobs)
        m = self.metrics
        for key in self._jobs - new:
            labels = (key.target, key.model, key.probe)
            for family in m.per_job():
                _remove(family, labels)
            for reason in Reason:
                _remove(m.errors, (*labels, reason.value))
                _remove(m.error_duration, (*labels, reason.value))
        for key in new - self._jobs:
            labels = (key.target, key.model, key.probe)
            for family in m.precreated():
                family.labels(*labels)
            for reason in Reason:
                m.errors.labels(*labels, reason.value)
        self._jobs = new

    def record(self, result: ProbeResult) -> bool:
        """Apply one result; False (and nothing recorded) if its job left the config."""
        key = result.job
        if key not in self._jobs:
            return False
        m = self.metrics
        labels = (key.target, key.model, key.probe)
        m.runs.labels(*labels).inc()
        m.last_run.labels(*labels).set(result.finished_at)
        if result.reason is not None:
            m.success.labels(*labels).set(0)
            m.errors.labels(*labels, result.reason.value).inc()
            m.error_duration.labels(*labels, result.reason.value).observe(
                result.elapsed_ns / NS_PER_S
            )
            return True
        m.success.labels(*labels).set(1)
        self._observe_success(result, labels)
        return True

    def _observe_success(self, result: ProbeResult, labels: tuple[str, str, str]) -> None:
        m = self.metrics
        m.duration.labels(*labels).observe(result.elapsed_ns / NS_PER_S)
        if result.ttft_ns is not None:
            m.ttft.labels(*labels).observe(result.ttft_ns / NS_PER_S)
        optional = (
            (m.tokens_per_second, result.tokens_per_second),
            (m.tpot, result.time_per_output_token_seconds),
            (m.server_tokens_per_second, result.server_tokens_per_second),
            (m.prompt_tokens_per_second, result.prompt_tokens_per_second),
        )
        for family, value in optional:
            if value is not None:
                family.labels(*labels).observe(value)
        server = result.server
        if server is not None:
            m.load_duration.labels(*labels).observe(server.load_duration_ns / NS_PER_S)
            if server.eval_count > 0 and server.eval_duration_ns > 0:
                m.output_tokens.labels(*labels).inc(server.eval_count)
                m.server_eval_seconds.labels(*labels).inc(server.eval_duration_ns / NS_PER_S)


def _remove(family: MetricWrapperBase, labels: tuple[str, ...]) -> None:
    # KeyError: never created (e.g. an error histogram child for a reason never seen).
    with contextlib.suppress(KeyError):
        family.remove(*labels)
