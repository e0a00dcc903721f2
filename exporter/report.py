"""One conversion of a ``ProbeResult`` into plain named values, for every human-facing output.

Logs, ``probe --json`` and the landing page all read this dict, so a field added to the result
shows up everywhere at once, under one name. Values are in base units (seconds, tokens per
second) under the names the metrics use, so a number means the same thing wherever it appears.
"""

from __future__ import annotations

from typing import Any

from exporter.result import NS_PER_S, ProbeResult


def _seconds(ns: int | None) -> float | None:
    return None if ns is None else ns / NS_PER_S


def result_dict(result: ProbeResult) -> dict[str, Any]:
    """Every measured value of one run, ``None`` where it was not measured.

    A parallel run is described by its summary here (``parallel``, ``streams_failed``,
    ``parallel_tokens_per_second``); ``stream_dicts`` describes its streams one by one.
    """
    server = result.server
    streams = result.streams
    return {
        "target": result.job.target,
        "model": result.job.model,
        "probe": result.job.probe,
        "success": result.success,
        "reason": None if result.reason is None else result.reason.value,
        "skipped": None if result.skipped is None else result.skipped.value,
        "detail": result.detail,
        "http_status": result.http_status,
        "parallel": len(streams) if streams else None,
        "streams_failed": sum(not s.success for s in streams) if streams else None,
        "parallel_tokens_per_second": result.parallel_tokens_per_second,
        "time_to_first_token_seconds": _seconds(result.ttft_ns),
        "time_to_first_content_token_seconds": _seconds(result.ttfct_ns),
        "duration_seconds": _seconds(result.elapsed_ns),
        "output_tokens": result.output_tokens,
        "tokens_from_chunks": result.tokens_from_chunks,
        "text_chunks": result.text_chunks,
        "tokens_per_second": result.tokens_per_second,
        "time_per_output_token_seconds": result.time_per_output_token_seconds,
        "server_tokens_per_second": result.server_tokens_per_second,
        "prompt_tokens": result.prompt_tokens,
        "prompt_tokens_per_second": result.prompt_tokens_per_second,
        "load_duration_seconds": (
            None if server is None or not server.timings else server.load_duration_ns / NS_PER_S
        ),
        "done_reason": None if server is None else server.done_reason,
    }


def stream_dicts(result: ProbeResult) -> list[dict[str, Any]]:
    """The streams of a parallel run, each as ``result_dict`` describes a probe."""
    return [result_dict(stream) for stream in result.streams]


def log_fields(result: ProbeResult) -> dict[str, Any]:
    """``result_dict`` without the values that were not measured, for one compact log line."""
    return {k: v for k, v in result_dict(result).items() if v is not None and v != ""}
