"""ProbeResult → Prometheus metrics: the only module that defines metrics.

Every probe metric carries ``target``, ``model`` and ``probe``, whose values come from config
only, so cardinality is bounded by config. Values come from the last scheduled probes, not
from the scrape: a scrape never triggers or waits for a probe.

Histograms, not last-value gauges: a scrape would see only the latest probe, quantiles would
be impossible and one outlier would fire an alert. Buckets live in ``exporter.buckets``.

The histograms of one generation's timing also carry ``parallel``: the profile's number of
streams per run (1 to 32, from config), because those values change with concurrency. It
adds no series (a profile has one value), so every ``sum by (job, target, model, probe)``
reads as before; it lets a query group or filter by concurrency across profiles. Counters
and gauges count runs and probes, which concurrency does not change, and keep the three
labels. The model inventory (``ollama_probe_model_*``) is per model on a target: ``target``
and ``model`` only.

Rendered when a result arrives, not when scraped (``exporter.exposition``): at fleet size
(2,000 jobs, hundreds of thousands of samples) prometheus-client's metric objects took
seconds per scrape and hundreds of MiB. The recorder keeps each job's numbers as plain
integers and floats and, when a result changes them, re-renders that job's lines of the
families it touched, on the event loop, in a fraction of a millisecond; a scrape joins the
bytes. The lines are exactly what prometheus-client would print for the same values, and
``collect()`` (for ``generate_latest``, ``get_sample_value`` and ``name[]`` filters) parses
them back, so there is one source of truth.

Sample exposition::

    ollama_probe_duration_seconds_bucket{le="1.0",model="m",parallel="1",probe="p",target="t"} 12.0
    ollama_probe_errors_total{model="m",probe="p",reason="timeout_stall",target="t"} 0.0
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    exposition,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from exporter.buckets import (
    DURATION_BUCKETS,
    ERROR_DURATION_BUCKETS,
    PROMPT_TOKENS_PER_SECOND_BUCKETS,
    TOKENS_PER_SECOND_BUCKETS,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
)
from exporter.exposition import Registry, Rendered
from exporter.result import NS_PER_S, Inventory, JobKey, ProbeResult, Reason, SkipReason

LABELS = ("target", "model", "probe")
STREAM_LABELS = (*LABELS, "parallel")
MODEL_LABELS = ("target", "model")


def new_registry() -> Registry:
    """A private registry with the process and Python collectors, and no ``_created`` series.

    ``disable_created_metrics`` is a process-wide switch in prometheus-client; the
    ``_created`` series would double the counter series for nothing Prometheus uses. The
    registry keeps its collectors in order, so ``/metrics`` can serve pre-rendered families
    as bytes (``exporter.exposition``).
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
    registry = Registry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


# The exporter's own delays: sub-millisecond when all is well, seconds when it is starved.
LOOP_LAG_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
# Rendering /metrics: milliseconds for a few jobs, tens of them at fleet size; seconds mean
# a scrape is near Prometheus' default 10 s timeout.
RENDER_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
START_DELAY_BUCKETS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class ExporterMetrics:
    """Metrics about the exporter itself: version and config reloads (as blackbox_exporter),
    and its own delays, which are measurement error in every probe it runs meanwhile."""

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
        self.loop_lag = Histogram(
            "ollama_probe_exporter_event_loop_lag_seconds",
            "How late the probes' event loop ran a timer, sampled about 10 times a second: the "
            "delay of everything on the loop, probe starts and deadlines included.",
            buckets=LOOP_LAG_BUCKETS, registry=registry,
        )  # fmt: skip
        self.start_delay = Histogram(
            "ollama_probe_exporter_probe_start_delay_seconds",
            "How long after its scheduled time each run began (before waiting for its "
            "target's concurrency slot).",
            buckets=START_DELAY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.render_time = Histogram(
            "ollama_probe_exporter_metrics_render_seconds",
            "Time spent producing each /metrics answer (joining, compressing), not counting "
            "the writes to the scraper's socket; a scrape counts in the next one's.",
            buckets=RENDER_BUCKETS, registry=registry,
        )  # fmt: skip

    def config_loaded(self, ok: bool, when: float) -> None:
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_time.set(when)


Kind = Literal["counter", "gauge", "histogram"]
_LABELS = "\x00"  # where a histogram template takes its labels
_INF = float("inf")


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: cheap, and unique
class Family:
    """One metric family: what prometheus-client's metric classes would declare, no values.

    ``labels`` in declaration order; the exposition sorts them by name, as prometheus-client
    does. The headers are prometheus-client's own rendering of an empty family.
    """

    name: str
    kind: Kind
    doc: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    text_header: bytes = field(init=False, repr=False)
    openmetrics_header: bytes = field(init=False, repr=False)
    les: tuple[str, ...] = field(init=False, repr=False)
    template: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        les = (*map(_go, self.buckets), "+Inf")
        object.__setattr__(self, "les", les)
        # A histogram's block for any labels: ``_LABELS`` stands for them, ``%d`` for the
        # cumulative counts and ``%s`` for the sum, filled by two calls in C.
        name = self.name
        template = "".join(f'{name}_bucket{{le="{le}",{_LABELS}}} %d.0\n' for le in les)
        template += f"{name}_count{{{_LABELS}}} %d.0\n{name}_sum{{{_LABELS}}} %s\n"
        object.__setattr__(self, "template", template)
        empty = [Metric(self.name, self.doc, self.kind)]
        group = _Families(empty)
        text: bytes = exposition.generate_latest(group)
        om: bytes = openmetrics.generate_latest(group).removesuffix(b"# EOF\n")  # type: ignore[no-untyped-call]
        object.__setattr__(self, "text_header", text)
        object.__setattr__(self, "openmetrics_header", om)

    @property
    def sample(self) -> str:
        """The sample name of a counter or gauge."""
        return self.name + "_total" if self.kind == "counter" else self.name

    def describe(self) -> Metric:
        return Metric(self.name, self.doc, self.kind)


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


class ProbeMetrics:
    """The probe metric families: names, help, types, labels and buckets."""

    def __init__(self) -> None:
        def hist(name: str, doc: str, buckets: tuple[float, ...]) -> Family:
            return Family(name, "histogram", doc, STREAM_LABELS, buckets)

        def counter(name: str, doc: str) -> Family:
            return Family(name, "counter", doc, LABELS)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = LABELS) -> Family:
            return Family(name, "gauge", doc, labels)

        self.success = gauge(
            "ollama_probe_success",
            "1 if the last scheduled run of this job succeeded (every stream of it), 0 if it "
            "failed; a skipped run leaves it as it was.",
        )
        self.runs = counter(
            "ollama_probe_runs",
            "Probes finished, successful or not (a run of a parallel profile is that many).",
        )
        self.errors = Family(
            "ollama_probe_errors", "counter",
            "Failed probes by reason (closed set; see the README).",
            (*LABELS, "reason"),
        )  # fmt: skip
        self.error_duration = Family(
            "ollama_probe_error_duration_seconds", "histogram",
            "Time from request start until a failed probe failed.",
            (*LABELS, "reason"), ERROR_DURATION_BUCKETS,
        )  # fmt: skip
        self.skipped = Family(
            "ollama_probe_skipped", "counter",
            "Runs that sent no generation, by reason: not_loaded (when: if_loaded, and "
            "/api/ps did not list the model). Neither a success nor an error.",
            (*LABELS, "reason"),
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

    def all(self) -> tuple[Family, ...]:
        """Every family, in exposition order."""
        return (self.success, self.runs, self.errors, self.error_duration, self.skipped,
                *self.per_stream(), self.output_tokens, self.server_eval_seconds,
                self.prompt_tokens, self.last_run, *self.per_model())  # fmt: skip

    def per_stream(self) -> tuple[Family, ...]:
        """Families labelled by job and parallel."""
        return (self.ttft, self.ttfct, self.tokens_per_second, self.server_tokens_per_second,
                self.prompt_tokens_per_second, self.tpot, self.duration, self.load_duration,
                self.parallel_tokens_per_second)  # fmt: skip

    def per_model(self) -> tuple[Family, ...]:
        return (self.model_loaded, self.model_size, self.model_vram, self.model_partial_offload)

    def precreated(self, key: JobKey) -> list[Family]:
        """The families a job's series exist in from start-up, so rate() sees the first event.

        Only those the job can ever observe (its ``JobShape``): a series that could never
        move would only mislead. Not ``success``, ``last_run`` nor ``prompt_tokens``: a value
        before the first probe would be a lie. Not the error histogram: 12 reasons x its
        buckets for nothing.
        """
        shape = key.shape
        families: list[Family] = [self.runs, self.duration]
        if shape.streamed:
            families += [self.ttft, self.ttfct, self.tokens_per_second, self.tpot]
        if shape.server_timings:
            families += [self.server_tokens_per_second, self.prompt_tokens_per_second,
                         self.load_duration, self.output_tokens,
                         self.server_eval_seconds]  # fmt: skip
        if shape.parallel > 1:
            families.append(self.parallel_tokens_per_second)
        return families


def _go(value: float) -> str:
    """A value as prometheus-client prints it (Go's float formatting): Python's ``repr``
    below a million, where the two agree, prometheus-client's own function beyond."""
    if -_INF < value < 1_000_000:
        return repr(float(value))
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]  # unannotated upstream


def _escape(value: str) -> str:
    """A label value as the exposition formats quote it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(**values: str) -> str:
    """``name="value"`` pairs sorted by name, as prometheus-client prints them."""
    return ",".join(f'{name}="{_escape(values[name])}"' for name in sorted(values))


def _count(n: int) -> str:
    """A whole count as prometheus-client prints it (a float: ``12.0``, ``1.234567e+06``)."""
    return f"{n}.0" if n < 1_000_000 else _go(n)


class _Histogram:
    """Observations per bucket (not cumulative; the last one is +Inf) and their sum."""

    __slots__ = ("counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)
        self.sum = 0.0

    def observe(self, bounds: tuple[float, ...], value: float) -> None:
        self.counts[bisect_left(bounds, value)] += 1  # the first bound >= value
        self.sum += value

    def render(self, family: Family, labels: str, escaped: str) -> str:
        """The family's lines for these labels (``escaped``: the same with ``%`` doubled):
        one template filled in, for counts that print as ``12.0``; line by line beyond
        (Go prints 1e6 as ``1e+06``)."""
        totals = list(accumulate(self.counts))
        if totals[-1] < 1_000_000:
            return family.template.replace(_LABELS, escaped) % (*totals, totals[-1], _go(self.sum))
        return "".join(self.lines(family, labels))

    def lines(self, family: Family, labels: str) -> Iterator[str]:
        name = family.name
        total = 0
        for le, n in zip(family.les, self.counts, strict=True):
            total += n
            yield f'{name}_bucket{{le="{le}",{labels}}} {_count(total)}\n'
        yield f"{name}_count{{{labels}}} {_count(total)}\n"
        yield f"{name}_sum{{{labels}}} {_go(self.sum)}\n"


class _Owner:
    """Whose lines a block holds (a job, or a model on a target): its block of each family,
    and where each block sits in the exposition's flat list of blocks."""

    __slots__ = ("alive", "blocks", "slots")

    def __init__(self, families: int) -> None:
        self.alive = True  # until a reload drops it
        self.blocks = [b""] * families
        self.slots = [-1] * families


class _Job(_Owner):
    """One job's numbers, and its label strings rendered once."""

    __slots__ = ("by_reason", "hists", "job", "key", "reason_hists", "reason_labels",
                 "scalars", "stream", "stream_escaped")  # fmt: skip

    def __init__(self, key: JobKey, families: int) -> None:
        super().__init__(families)
        self.job = _labels(target=key.target, model=key.model, probe=key.probe)
        self.stream = _labels(target=key.target, model=key.model, probe=key.probe,
                              parallel=str(key.shape.parallel))  # fmt: skip
        self.stream_escaped = self.stream.replace("%", "%%")
        self.reason_labels: dict[str, str] = {}
        self.scalars: dict[Family, float] = {}
        self.by_reason: dict[Family, dict[str, float]] = {}
        self.hists: dict[Family, _Histogram] = {}
        self.reason_hists: dict[str, _Histogram] = {}
        self.key = key

    def with_reason(self, reason: str) -> str:
        labels = self.reason_labels.get(reason)
        if labels is None:
            key = self.key
            labels = _labels(target=key.target, model=key.model, probe=key.probe, reason=reason)
            self.reason_labels[reason] = labels
        return labels


class Recorder:
    """Applies finished runs to the metrics, and keeps the series in line with the config.

    Called from one thread (the event loop); scrapes read from theirs. The exposition is one
    flat list of blocks: each family's header, then one block per owner (a job, or a model
    on a target), empty until the owner has lines there. A result re-renders its job's
    blocks of the families it touched and puts them in their places; a scrape copies the
    list under a lock held for well under a millisecond, then joins it without the lock.
    The layout changes only when the config does.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.metrics = ProbeMetrics()
        self._families = self.metrics.all()
        self._index = {family: i for i, family in enumerate(self._families)}
        self._per_model = frozenset(self._index[f] for f in self.metrics.per_model())
        self._state: dict[JobKey, _Job] = {}
        self._models: dict[tuple[str, str], _Owner] = {}
        self._model_values: dict[tuple[str, str], tuple[float, ...]] = {}
        self._flat: list[bytes] = []
        self._headers_at: list[int] = []
        self._length = 0  # of the blocks in _flat
        self._lock = threading.Lock()
        self._generation = 0
        self._cache: dict[bool, tuple[int, Rendered]] = {}
        registry.register(self)

    # --- the collector side (scrape threads) ---------------------------------------------

    def describe(self) -> list[Metric]:
        """The families' names, without values: registering must not collect."""
        return [family.describe() for family in self._families]

    def exposition(self, openmetrics: bool) -> Rendered:
        """Every probe family as exposition text, rebuilt only after a change."""
        with self._lock:
            generation = self._generation
            cached = self._cache.get(openmetrics)
            if cached is not None and cached[0] == generation:
                return cached[1]
            parts = self._flat.copy()
            headers_at = self._headers_at
            length = self._length
        for family, at in zip(self._families, headers_at, strict=True):
            parts[at] = header = family.openmetrics_header if openmetrics else family.text_header
            length += len(header)
        rendered = Rendered(parts, length)
        with self._lock:
            if self._generation == generation:
                self._cache[openmetrics] = (generation, rendered)
        return rendered

    def collect(self) -> Iterable[Metric]:
        """The same families as objects, parsed back from the text (slow; for filters and
        tests: ``/metrics`` serves the bytes)."""
        text = self.exposition(openmetrics=False).text.decode()
        return list(text_string_to_metric_families(text))

    # --- the event-loop side ------------------------------------------------------------

    def sync_jobs(self, jobs: Iterable[JobKey]) -> None:
        """Pre-create series for configured jobs; drop every series of jobs no longer there."""
        new = dict.fromkeys(jobs)
        m = self.metrics
        families = len(self._families)
        for key in [k for k in self._state if k not in new]:
            self._state.pop(key).alive = False
        added: list[_Job] = []
        for key in new:
            if key in self._state:
                continue
            job = self._state[key] = _Job(key, families)
            for family in m.precreated(key):
                if family.kind == "histogram":
                    job.hists[family] = _Histogram(len(family.buckets))
                else:
                    job.scalars[family] = 0.0
            job.by_reason[m.errors] = dict.fromkeys((r.value for r in Reason), 0.0)
            if key.shape.skippable:
                job.by_reason[m.skipped] = dict.fromkeys((s.value for s in SkipReason), 0.0)
            added.append(job)
        pairs = dict.fromkeys((key.target, key.model) for key in new)
        for pair in [p for p in self._models if p not in pairs]:
            self._models.pop(pair).alive = False
            self._model_values.pop(pair, None)
        for pair in pairs:
            if pair not in self._models:
                self._models[pair] = _Owner(families)
        self._relayout()
        for job in added:
            self._render(job, (*m.precreated(job.key), m.errors, m.skipped))

    def _relayout(self) -> None:
        """Place every owner's blocks in a new flat list: after a config change only."""
        flat: list[bytes] = []
        headers_at: list[int] = []
        for index in range(len(self._families)):
            headers_at.append(len(flat))
            flat.append(b"")
            owners = self._models.values() if index in self._per_model else self._state.values()
            for owner in owners:
                owner.slots[index] = len(flat)
                flat.append(owner.blocks[index])
        length = sum(map(len, flat))
        with self._lock:
            self._flat, self._headers_at, self._length = flat, headers_at, length
            self._changed()

    def record(self, result: ProbeResult) -> bool:
        """Apply one run's result; False (and nothing recorded) if its job left the config."""
        key = result.job
        job = self._state.get(key)
        if job is None:
            return False
        m = self.metrics
        if result.inventory is not None:
            self._inventory(result.inventory)
        touched: set[Family] = {m.last_run}
        job.scalars[m.last_run] = result.finished_at
        if result.skipped is not None:
            counts = job.by_reason.setdefault(m.skipped, {})
            counts[result.skipped.value] = counts.get(result.skipped.value, 0.0) + 1
            touched.add(m.skipped)
        else:
            for stream in result.streams or (result,):
                self._probe(stream, job, touched)
            job.scalars[m.success] = 1.0 if result.reason is None else 0.0
            touched.add(m.success)
            aggregate = result.parallel_tokens_per_second
            if aggregate is not None:
                self._observe(job, m.parallel_tokens_per_second, aggregate, touched)
        self._render(job, touched)
        return True

    def _probe(self, result: ProbeResult, job: _Job, touched: set[Family]) -> None:
        """One generation: counted, and observed by reason or by its measurements."""
        m = self.metrics
        self._add(job, m.runs, 1, touched)
        if result.reason is not None:
            reason = result.reason.value
            errors = job.by_reason[m.errors]
            errors[reason] = errors.get(reason, 0.0) + 1
            hist = job.reason_hists.get(reason)
            if hist is None:
                hist = job.reason_hists[reason] = _Histogram(len(m.error_duration.buckets))
            hist.observe(m.error_duration.buckets, result.elapsed_ns / NS_PER_S)
            touched.update((m.errors, m.error_duration))
            return
        self._observe_success(result, job, touched)

    def _observe_success(self, result: ProbeResult, job: _Job, touched: set[Family]) -> None:
        m = self.metrics
        self._observe(job, m.duration, result.elapsed_ns / NS_PER_S, touched)
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
                self._observe(job, family, value, touched)
        if result.prompt_tokens is not None:
            job.scalars[m.prompt_tokens] = float(result.prompt_tokens)
            touched.add(m.prompt_tokens)
        server = result.server
        if server is not None and server.timings:
            self._observe(job, m.load_duration, server.load_duration_ns / NS_PER_S, touched)
            if server.eval_count > 0 and server.eval_duration_ns > 0:
                self._add(job, m.output_tokens, server.eval_count, touched)
                self._add(job, m.server_eval_seconds, server.eval_duration_ns / NS_PER_S, touched)

    @staticmethod
    def _add(job: _Job, family: Family, amount: float, touched: set[Family]) -> None:
        job.scalars[family] = job.scalars.get(family, 0.0) + amount
        touched.add(family)

    @staticmethod
    def _observe(job: _Job, family: Family, value: float, touched: set[Family]) -> None:
        hist = job.hists.get(family)
        if hist is None:
            hist = job.hists[family] = _Histogram(len(family.buckets))
        hist.observe(family.buckets, value)
        touched.add(family)

    def _render(self, job: _Job, families: Iterable[Family]) -> None:
        """Re-render ``job``'s block of each family and publish them at once."""
        m = self.metrics
        blocks: list[tuple[int, bytes]] = []
        for family in families:
            if family.kind == "histogram":
                if family is m.error_duration:
                    text = "".join(
                        hist.render(family, labels, labels.replace("%", "%%"))
                        for hist, labels in (
                            (h, job.with_reason(r)) for r, h in job.reason_hists.items()
                        )
                    )
                else:
                    hist = job.hists.get(family)
                    if hist is None:
                        continue
                    text = hist.render(family, job.stream, job.stream_escaped)
            elif family in job.by_reason:
                text = "".join(
                    f"{family.sample}{{{job.with_reason(reason)}}} {_go(value)}\n"
                    for reason, value in job.by_reason[family].items()
                )
            elif family in job.scalars:
                text = f"{family.sample}{{{job.job}}} {_go(job.scalars[family])}\n"
            else:
                continue
            blocks.append((self._index[family], text.encode()))
        self._publish(job, blocks)

    def _publish(self, owner: _Owner, blocks: list[tuple[int, bytes]]) -> None:
        """Put an owner's new blocks in their places, all at once for the scrapes."""
        with self._lock:
            if not owner.alive:
                return  # dropped by a reload meanwhile
            flat, slots, held = self._flat, owner.slots, owner.blocks
            for index, block in blocks:
                self._length += len(block) - len(held[index])
                held[index] = flat[slots[index]] = block
            self._changed()

    def _changed(self) -> None:
        """Under the lock: the blocks changed. The cached bodies go at once, so the blocks
        they hold are freed with them rather than kept alive beside their successors."""
        self._generation += 1
        self._cache.clear()

    def _inventory(self, inventory: Inventory) -> None:
        """The target's configured models as /api/ps listed them; unknown (no series) when
        it could not be read: "not loaded" would be a claim nobody checked."""
        if inventory.models is None:
            for pair, known in self._models.items():
                if pair[0] == inventory.target and pair in self._model_values:
                    del self._model_values[pair]
                    self._publish(known, [(index, b"") for index in self._per_model])
            return
        m = self.metrics
        for entry in inventory.models:
            pair = (inventory.target, entry.model)
            owner = self._models.get(pair)
            if owner is None:
                continue
            values = (1.0 if entry.loaded else 0.0, float(entry.size_bytes),
                      float(entry.vram_bytes), 1.0 if entry.partial_offload else 0.0)  # fmt: skip
            if self._model_values.get(pair) == values:
                continue
            self._model_values[pair] = values
            labels = _labels(target=pair[0], model=pair[1])
            self._publish(owner, [
                (self._index[family], f"{family.name}{{{labels}}} {_go(v)}\n".encode())
                for family, v in zip(m.per_model(), values, strict=True)
            ])  # fmt: skip


def _seconds(ns: int | None) -> float | None:
    return None if ns is None else ns / NS_PER_S
