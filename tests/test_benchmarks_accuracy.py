"""A tiny run of the load-accuracy benchmark, so that it keeps working: every mode runs
probes against simulator processes and prints its row. No numbers are judged here; the
benchmark's numbers depend on the machine and belong in its own output."""

from __future__ import annotations

import re

import pytest

from benchmarks import load_accuracy


@pytest.mark.slow
def test_load_accuracy_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--targets", "2", "--models", "2", "--interval", "1", "--tokens", "4",
            "--seconds", "1", "--warmup", "1", "--rounds", "1", "--sim-processes", "1"]  # fmt: skip
    assert load_accuracy.main(argv) == 0
    out = capsys.readouterr().out
    for mode in load_accuracy.MODES.values():
        row = next(line for line in out.splitlines() if line.startswith(mode.name))
        probes, lost = (int(n) for n in row[len(mode.name) :].split()[:2])
        assert probes > 0
        assert lost == 0
        assert re.search(r"\d+/4 ", row), row  # jobs within tolerance, out of 2 x 2
