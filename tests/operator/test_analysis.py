"""Canary analysis from real Prometheus text of the server's metrics."""

from __future__ import annotations

import math

import pytest

from crucible.api.modeldeployment import AnalysisSpec
from crucible.operator.modeldeployment.rollout.analysis import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Counters,
    analyse,
    parse,
    quantile,
)
from crucible.server.metrics import ServerMetrics

INFER = "/v2/models/{name}/infer"


def served(*requests: tuple[str, int, float]) -> str:
    metrics = ServerMetrics()
    for endpoint, code, seconds in requests:
        metrics.observe_request(endpoint, "POST", code, seconds)
    text, _ = metrics.render()
    return text.decode()


def test_only_inference_requests_count_and_5xx_are_errors() -> None:
    text = served(
        (INFER, 200, 0.004),
        (INFER, 503, 0.002),
        ("/predict", 500, 0.02),
        ("/predict", 400, 0.02),  # a client error is not the model's fault
        ("/v2/health/ready", 503, 0.001),  # probes are not traffic
    )
    counters = parse(text)
    assert (counters.requests, counters.errors) == (4, 2)
    assert counters.buckets[math.inf] == 4 and counters.buckets[0.005] == 2


def test_a_window_is_the_change_between_reads_and_survives_restarts() -> None:
    before = Counters(10, 1, {0.1: 8, math.inf: 10})
    after = Counters(30, 2, {0.1: 25, math.inf: 30})
    assert after.since(before) == Counters(20, 1, {0.1: 17, math.inf: 20})
    restarted = Counters(5, 0, {0.1: 5, math.inf: 5})
    assert restarted.since(before) == restarted
    assert (before + after).requests == 40


def test_p95_interpolates_inside_its_bucket() -> None:
    # 100 requests: 90 under 10 ms, 10 between 10 and 50 ms: p95 is half way through the second bucket.
    buckets = {0.01: 90, 0.05: 100, math.inf: 100}
    assert quantile(buckets, 0.95) == pytest.approx(0.03)
    assert quantile({math.inf: 0}, 0.95) is None
    assert quantile({0.01: 0, math.inf: 10}, 0.95) == 0.01  # beyond the last bound: the bound


LIMITS = AnalysisSpec(max_error_rate=0.05, max_latency_p95_ms=100, min_requests=10)


@pytest.mark.parametrize(
    ("window", "result", "words"),
    [
        (Counters(5, 5, {math.inf: 5}), INCONCLUSIVE, "5 inference requests, 10 needed"),
        (Counters(100, 1, {0.01: 100, math.inf: 100}), PASS, "100 requests, error rate 0.0100"),
        (Counters(100, 10, {0.01: 100, math.inf: 100}), FAIL, "error rate 0.1000 > 0.05"),
        (Counters(100, 0, {0.01: 50, 1.0: 100, math.inf: 100}), FAIL, "p95 latency"),
    ],
)
def test_verdicts_name_their_figures(window: Counters, result: str, words: str) -> None:
    analysis = analyse(window, LIMITS)
    assert analysis.result == result
    assert words in analysis.message
