"""The README stays true to the code: its two commands, metric reference, reasons and buckets."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import buckets
from exporter.cli import DEFAULT_PORT
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

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def metric_reference() -> str:
    start = README.index("## Metric reference")
    return README[start : README.index("\n## ", start + 1)]


def exported_names() -> set[str]:
    """Names of the families with samples after every kind of run: a successful and a failed
    probe, a parallel run, a skip, an inventory."""
    registry = new_registry()
    recorder = Recorder(registry)
    ExporterMetrics(registry, "0").config_loaded(True, 1.0)
    key = JobKey("t", "m", "p")
    parallel = JobKey("t", "m", "q", JobShape(parallel=2, skippable=True))
    recorder.sync_jobs([key, parallel])
    stats = ServerStats(eval_count=5, eval_duration_ns=10, prompt_eval_count=3,
                        prompt_eval_duration_ns=10, load_duration_ns=1)  # fmt: skip
    inventory = Inventory("t", (Residency("m", True, 10, 5),))
    ok = ProbeResult(job=key, finished_at=1.0, reason=None, elapsed_ns=9, ttft_ns=2, ttfct_ns=3,
                     decode_span_ns=4, output_tokens=5, server=stats, t0_ns=0,
                     inventory=inventory)  # fmt: skip
    recorder.record(ok)
    recorder.record(ProbeResult(job=key, finished_at=2.0, reason=Reason.TRUNCATED))
    stream = dataclasses.replace(ok, job=parallel)
    recorder.record(ProbeResult(job=parallel, finished_at=3.0, reason=None,
                                streams=(stream, stream)))  # fmt: skip
    recorder.record(ProbeResult(job=parallel, finished_at=4.0, reason=None,
                                skipped=SkipReason.NOT_LOADED))  # fmt: skip
    text = generate_latest(registry).decode()
    names = set()
    for family in text_string_to_metric_families(text):
        suffix = "_total" if family.type == "counter" else ""
        if family.samples:
            names.add(family.name + suffix)
    return {n for n in names if n.startswith("ollama_probe")}


def test_starts_with_the_two_commands() -> None:
    """The first code block is exactly `make demo` and `make test`, and .ci/run runs the latter."""
    block = re.search(r"```sh\n(.*?)```", README, re.DOTALL)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_metric_reference_matches_the_exposition() -> None:
    """Every exported ollama_probe_* metric is documented, and nothing documented is missing."""
    documented = set(re.findall(r"^\| `(ollama_probe_\w+)", metric_reference(), re.MULTILINE))
    exported = exported_names()
    assert documented == exported


def test_every_reason_is_documented() -> None:
    """The failure-reason table lists exactly the closed set."""
    start = README.index("## Failure reasons")
    section = README[start : README.index("\n## ", start + 1)]
    documented = set(re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE))
    assert documented == {r.value for r in Reason}


def test_bucket_table_matches_the_code() -> None:
    """Each bucket row in the README is the code's boundary list."""
    reference = metric_reference()
    for family in (buckets.TTFT_BUCKETS, buckets.TPOT_BUCKETS, buckets.DURATION_BUCKETS,
                   buckets.TOKENS_PER_SECOND_BUCKETS, buckets.PROMPT_TOKENS_PER_SECOND_BUCKETS,
                   buckets.ERROR_DURATION_BUCKETS):  # fmt: skip
        row = " ".join(f"{b:g}" for b in family)
        assert f"| {row} |" in reference


def test_default_port() -> None:
    """The README names the port the code listens on by default."""
    assert f"port **{DEFAULT_PORT}**" in README
    assert f"127.0.0.1:{DEFAULT_PORT}/metrics" in README
