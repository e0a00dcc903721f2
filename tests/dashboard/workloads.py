"""A second exporter with the workload shapes the shared probed exporter has no job for.

``tests.support.prometheus.probed_exporter`` runs one short, single-stream, unconditional
profile. Some series exist only for other shapes: the aggregate tokens/s of a ``parallel``
profile, and ``ollama_probe_skipped_total`` of a ``when: if_loaded`` profile (pre-created for
those jobs only). This exporter probes the same simulator with both shapes, so the rules'
and the dashboard's tests see every series the exporter can export, and the end-to-end
Prometheus scrapes them. ``MISSING_MODEL`` is not on the simulator: ``/api/ps`` never lists
it, so its ``if-loaded`` runs are all skipped (and its ``parallel-2`` runs fail).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.support.processes import RunningProcess, exporter_process, http_get
from tests.support.prometheus import (
    FAST_MODEL,
    MISSING_MODEL,
    exposed_samples,
    full_exposition,
    probed_exporter,
    wait_for,
)

WORKLOAD_PROBES = ["parallel-2", "if-loaded"]
"""The profiles of the workload exporter (their ``probe`` label values)."""


def workload_config(simulator_url: str) -> dict[str, object]:
    """Two profiles, a 2-stream one and an ``if_loaded`` one, on a served and a missing model."""
    common = {"max_tokens": 16, "interval": "1s", "timeout": "10s", "stall_timeout": "5s"}
    return {
        "targets": [
            {
                "name": "sim",
                "url": simulator_url,
                "models": [FAST_MODEL, MISSING_MODEL],
                "concurrency": 4,
            }
        ],
        "probes": [
            {"name": "parallel-2", "api": "chat", "parallel": 2, "prompt_tokens": 200, **common},
            {"name": "if-loaded", "when": "if_loaded", **common},
        ],
    }


@contextmanager
def workload_exporter(simulator_url: str, work: Path) -> Iterator[RunningProcess]:
    """Run an exporter with the workload profiles against ``simulator_url``."""
    config = work / "workloads.yml"
    config.write_text(yaml.safe_dump(workload_config(simulator_url)))
    with exporter_process(config) as exporter:
        yield exporter


def _has_positive(text: str, metric: str, **labels: str) -> bool:
    """True if a sample of ``metric`` with ``labels`` among its labels is above zero."""
    matchers = "".join(f'(?=[^}}]*{key}="{re.escape(value)}")' for key, value in labels.items())
    pattern = rf"^{metric}\{{{matchers}[^}}]*\}} ([0-9.e+]+)$"
    return any(float(value) > 0 for value in re.findall(pattern, text, re.MULTILINE))


def workload_exposition(exporter: RunningProcess, timeout: float = 30.0) -> str:
    """The workload exporter's /metrics once a parallel run succeeded and a run was skipped."""

    def ready() -> str | None:
        status, text = http_get(f"{exporter.url}/metrics")
        assert status == 200, text
        done = _has_positive(
            text, "ollama_probe_parallel_tokens_per_second_count", model=FAST_MODEL
        ) and _has_positive(
            text, "ollama_probe_skipped_total", model=MISSING_MODEL, reason="not_loaded"
        )
        return text if done else None

    return wait_for(ready, timeout, "a parallel run and a skipped run in /metrics")


def every_series_exposition(work: Path) -> str:
    """The /metrics of the shared probed exporter and of the workload exporter, both probing
    one simulator: success and failure, a parallel run and a skip, so that every series the
    exporter can export is there. The processes stop once it is read."""
    with (
        probed_exporter(work) as stack,
        workload_exporter(stack.simulator.url, work) as workloads,
    ):
        return full_exposition(stack) + workload_exposition(workloads)


def exported_labels(*expositions: str) -> dict[str, set[str]]:
    """Sample name → the label names the exporter gives it, over several expositions."""
    found: dict[str, set[str]] = {}
    for text in expositions:
        for sample in exposed_samples(text):
            found.setdefault(sample.name, set()).update(sample.labels)
    return found
