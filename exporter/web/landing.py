"""The landing page ``/``: links, and the last result of every job.

A parallel run shows its slowest stream's time to first token and its aggregate tokens/s;
a skipped run says why it sent nothing.

Result details come from the probed servers (an Ollama error body, an exception message); a
``ProbeResult`` cuts its detail to ``DETAIL_MAX_BYTES`` when it is built, so a misbehaving
server cannot make this page, and every scrape of it, arbitrarily large.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from exporter.report import result_dict
from exporter.result import NS_PER_S, JobKey, ProbeResult


def _status(data: dict[str, object]) -> str:
    if data["skipped"] is not None:
        return f"skipped: {data['skipped']}"
    if data["success"]:
        return "ok"
    return f"FAIL: {data['reason']}"


def _row(key: JobKey, result: ProbeResult | None) -> str:
    cells: list[str] = [key.target, key.model, key.probe]
    if result is None:
        cells += ["pending", "", "", ""]
    else:
        data = result_dict(result)
        ttft, tps = data["time_to_first_token_seconds"], data["tokens_per_second"]
        if result.streams:  # a parallel run: its slowest first token, its aggregate rate
            ttfts = [s.ttft_ns for s in result.streams if s.ttft_ns is not None]
            ttft = max(ttfts) / NS_PER_S if ttfts else None
            tps = data["parallel_tokens_per_second"]
        cells += [
            _status(data),
            "" if ttft is None else f"{ttft:.3f} s",
            "" if tps is None else f"{tps:.1f}",
            data["detail"],
        ]
    return "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"


def landing_page(version: str, results: Mapping[JobKey, ProbeResult | None]) -> str:
    """The whole page as one string (a few kilobytes per hundred jobs)."""
    rows = "\n".join(_row(k, r) for k, r in sorted(results.items(), key=lambda kv: str(kv[0])))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Ollama Probe Exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:left}}</style>
</head><body>
<h1>Ollama Probe Exporter</h1>
<p>Version {html.escape(version)}.
<a href="/metrics">Metrics</a> &middot; <a href="/-/healthy">Health</a></p>
<h2>Last probe per job</h2>
<table>
<tr><th>target</th><th>model</th><th>probe</th><th>result</th><th>TTFT</th><th>tokens/s</th><th>detail</th></tr>
{rows}
</table>
</body></html>
"""
