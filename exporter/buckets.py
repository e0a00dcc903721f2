"""Histogram bucket boundaries: part of the public interface, chosen once.

Supersets of vLLM's bucket families, so ``le``-based queries carry over, widened to cover
both a GPU (300 tok/s, 20 ms TTFT) and a CPU (3 tok/s, a 2-minute cold load): prometheus-
client's default buckets stop at 10 s, which would put every CPU cold load and every rate
above 10 tok/s into ``+Inf``. Changing a boundary later breaks queries across the change.
"""

# fmt: off
# vLLM's TTFT family plus 30/60/120/300 s, where timeouts and cold loads land.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 30.0, 40.0, 60.0, 80.0, 120.0, 160.0, 300.0, 640.0, 2560.0,
)
# vLLM's ITL/TPOT family with 1-7.5 ms added below it: 300 tok/s is 3.3 ms per token.
TPOT_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
    0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)
# vLLM's end-to-end family plus 50-200 ms: 64 tokens on a GPU take about 0.25 s.
DURATION_BUCKETS = (
    0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
    50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)
# Decode rates from a CPU fallback (0.5 tok/s) to a fast GPU (2000 tok/s).
TOKENS_PER_SECOND_BUCKETS = (
    0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 75.0, 100.0, 150.0,
    200.0, 300.0, 400.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0,
)
# Prefill is one to two orders of magnitude faster than decode.
PROMPT_TOKENS_PER_SECOND_BUCKETS = (
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
    25000.0, 50000.0, 100000.0,
)
# Few buckets: this histogram has a `reason` label, so every bucket costs 12x per job.
ERROR_DURATION_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# fmt: on
