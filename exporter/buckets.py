"""Histogram bucket boundaries: part of the public interface.

Each histogram series costs its buckets + 2 lines in every scrape and every Prometheus
sample, for every job: at fleet size (2,000 jobs) the eight per-generation histograms are
most of the exposition. So the boundaries are a 1-2.5-5 series (steps of 2 to 2.5) over the
range that occurs, from a GPU (300 tok/s, 20 ms TTFT) to a CPU (3 tok/s, a 2-minute cold
load), denser only where values concentrate (decode rates of 5-300 tok/s, 20-100 ms per
token) and where limits sit (timeouts at 30, 60, 120 s). prometheus-client's default
buckets stop at 10 s, which would put every CPU cold load and every rate above 10 tok/s into
``+Inf``.

Every ``le`` that the shipped rules, their unit tests or the README's queries name is a
boundary here (TTFT 0.1-40 s and 5 s for the SLO, load 1 s for a cold load), and
``tests/test_buckets.py`` keeps it so. Changing a boundary breaks queries across the change.
"""

# fmt: off
# Time to first token, to first answer token, and load duration: warm GPU tens of ms,
# timeouts at 30/60/120 s, a CPU cold load minutes.
TTFT_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 30.0, 40.0,
    60.0, 120.0, 300.0,
)
# Seconds per output token: 1000 tok/s (1 ms) to 0.4 tok/s, dense over 10-100 ms.
TPOT_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5,
)
# A whole probe: 64 tokens on a GPU take about 0.25 s, on a CPU a minute; timeouts.
DURATION_BUCKETS = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)
# Decode rates from a CPU fallback (1 tok/s) to a fast GPU (2000 tok/s), dense over 5-300.
TOKENS_PER_SECOND_BUCKETS = (
    1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0,
    500.0, 1000.0, 2000.0,
)
# Prefill is one to two orders of magnitude faster than decode.
PROMPT_TOKENS_PER_SECOND_BUCKETS = (
    10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0, 50000.0,
)
# Few buckets: this histogram has a `reason` label, so every bucket costs 12x per job.
ERROR_DURATION_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# fmt: on
