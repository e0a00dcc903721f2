"""A tiny run of the load-accuracy benchmark, so that it keeps working: both schedules run
probes against a simulator process, with both kinds of stamp, and print their rows. No
numbers are judged here; they depend on the machine and belong in the benchmark's output."""

from __future__ import annotations

import re

import pytest

from benchmarks import load_accuracy


@pytest.mark.slow
def test_load_accuracy_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--targets", "2", "--models", "2", "--interval", "1", "--tokens", "4",
            "--seconds", "1", "--warmup", "0.5", "--rounds", "1", "--sim-processes", "1"]  # fmt: skip
    assert load_accuracy.main(argv) == 0
    out = capsys.readouterr().out
    for in_step in (True, False):
        for kernel in (False, True):
            name = load_accuracy.row_name(in_step, kernel)
            row = next(line for line in out.splitlines() if line.startswith(name))
            fields = row[len(name) :].split()
            assert int(fields[0]) > 0  # probes measured
            assert int(fields[-1]) == 0  # none failed or unmatched
            assert re.search(r" \d/2 ", row), row  # jobs within tolerance, of 1 target x 2
