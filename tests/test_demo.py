"""The demo's configuration: three workload shapes per model, and a schedule that fits."""

from __future__ import annotations

import math

import pytest

from exporter.config import build_settings
from exporter.demo import DEMO_PROFILES, DEMO_TARGETS, demo_settings
from exporter.simulator import DEMO_SCRIPTS, ModelScript


def test_three_shapes_for_every_model() -> None:
    """Short chat, a 1000-token prompt and four streams, for each model; no warnings."""
    settings = build_settings(demo_settings("http://127.0.0.1:1"), environ={})
    assert settings.warnings() == []
    short, prefill, parallel = settings.probes
    assert (short.api, short.prompt_tokens, short.parallel) == ("chat", None, 1)
    assert (prefill.prompt_tokens, parallel.parallel) == (1000, 4)
    assert {(j.model, j.target.name) for j in settings.jobs()} == set(DEMO_TARGETS.items())
    assert len(settings.jobs()) == 3 * len(DEMO_SCRIPTS)


def run_seconds(script: ModelScript, profile: dict[str, object]) -> float:
    """A run's length as the model's script makes it: queueing, prefill, decode."""
    tokens = min(script.tokens, int(profile.get("max_tokens", 64)))  # type: ignore[call-overload]
    prompt_tokens = int(profile.get("prompt_tokens") or 11)  # type: ignore[call-overload]
    prefill = (
        prompt_tokens / script.prompt_tokens_per_second if script.prompt_tokens_per_second else 0
    )
    stream = script.first_token_delay + prefill + tokens / script.tokens_per_second
    streams = int(profile.get("parallel", 1))  # type: ignore[call-overload]
    slots = script.num_parallel or streams
    return math.ceil(streams / slots) * stream


@pytest.mark.parametrize("model", sorted(DEMO_SCRIPTS))
def test_every_run_of_a_model_fits_the_shortest_interval(model: str) -> None:
    """Runs of one model take turns (one target each, concurrency 1), in no set order: a run
    may wait for one run of every other shape. Even then it must end before its next run is
    due, or the scheduler would skip that run and say so in the log."""
    shortest = min(float(str(p["interval"]).removesuffix("s")) for p in DEMO_PROFILES)
    worst = sum(run_seconds(DEMO_SCRIPTS[model], p) for p in DEMO_PROFILES)
    assert worst < 0.9 * shortest, worst
