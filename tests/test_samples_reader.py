"""The tests' fast exposition reader agrees with prometheus-client's parser and refuses
what that parser refuses."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.samples import samples


def test_reads_what_prometheus_client_reads() -> None:
    registry = CollectorRegistry()
    counter = Counter("c", "h", ["a", "b"], registry=registry)
    counter.labels('q"uote', "back\\slash\nnewline").inc(3)
    counter.labels("", "x,y=z").inc()
    Histogram("h_seconds", "h", ["t"], buckets=(0.1, 1.0), registry=registry).labels("t").observe(
        0.5
    )
    text = generate_latest(registry).decode()
    theirs = [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]
    assert list(samples(text)) == theirs
    assert len(theirs) > 5


@pytest.mark.parametrize(
    "line",
    [
        'x{a="1"',
        'x{a="1"} ',
        "x 1 2 3",
        "x{a=1} 1",
        'x{a="1"b="2"} 1',
        "1x 1",
        'x{a="1} 1',
        "x nope",
    ],
)
def test_refuses_a_torn_or_malformed_line(line: str) -> None:
    with pytest.raises(ValueError, match="malformed"):
        list(samples(line + "\n"))
