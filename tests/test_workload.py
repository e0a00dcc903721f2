"""A parallel run's summary, from stream results built by hand."""

from __future__ import annotations

from exporter.result import ProbeResult, Reason
from exporter.workload import summarize
from tests.support.jobs import make_job

JOB = make_job("http://127.0.0.1:9", "m", parallel=3)
MS = 1_000_000


def stream(t0_ms: int, elapsed_ms: int, reason: Reason | None = None) -> ProbeResult:
    return ProbeResult(job=JOB.key, finished_at=0.0, reason=reason, detail=f"d{t0_ms}",
                       t0_ns=t0_ms * MS, elapsed_ns=elapsed_ms * MS, output_tokens=10,
                       text_chunks=10)  # fmt: skip


def test_successful_run() -> None:
    """Every stream kept; the run spans the earliest start to the latest end."""
    streams = [stream(0, 100), stream(5, 200), stream(2, 50)]
    run = summarize(JOB, streams, 7.0)
    assert run.success
    assert run.streams == tuple(streams)
    assert (run.t0_ns, run.elapsed_ns, run.output_tokens) == (0, 205 * MS, 30)
    assert run.finished_at == 7.0
    assert run.detail == "3 streams; d0"


def test_first_failed_stream_names_the_reason() -> None:
    """Any failed stream fails the run, with the first failed stream's reason (start order);
    its tokens are not counted."""
    streams = [stream(0, 100), stream(5, 20, Reason.TRUNCATED), stream(2, 50, Reason.STREAM_ERROR)]
    run = summarize(JOB, streams, 7.0)
    assert run.reason is Reason.TRUNCATED
    assert run.detail == "2 of 3 streams failed; first: d5"
    assert run.output_tokens == 10
