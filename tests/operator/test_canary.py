"""The canary step machine, tick by tick, without a cluster."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from crucible.api.modeldeployment import RolloutSpec
from crucible.operator.kube.durations import parse_duration
from crucible.operator.modeldeployment.rollout.analysis import Counters, Sample
from crucible.operator.modeldeployment.rollout.canary import (
    ADVANCE,
    ANALYSIS_FAILED,
    METRICS_UNAVAILABLE,
    PROGRESS_DEADLINE_EXCEEDED,
    PROMOTE,
    ROLLBACK,
    WAIT,
    scrape_due,
    split,
    start,
    tick,
)
from crucible.operator.modeldeployment.rollout.reconcile import metrics_url

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ROLLOUT = RolloutSpec.model_validate(
    {
        "strategy": "Canary",
        "steps": [{"weight": 50, "pause": "10s"}, {"weight": 100, "pause": "0s"}],
        "analysis": {"interval": "5s", "minRequests": 10, "maxErrorRate": 0.1, "maxLatencyP95Ms": 100},
    }
)


@pytest.mark.parametrize(
    ("replicas", "weight", "expected"),
    [(1, 25, (1, 1)), (4, 25, (3, 1)), (4, 50, (2, 2)), (4, 100, (1, 4)), (10, 10, (9, 1)), (3, 1, (2, 1))],
)
def test_replica_split_keeps_a_stable_replica_and_at_least_one_canary(
    replicas: int, weight: int, expected: tuple[int, int]
) -> None:
    assert split(replicas, weight) == expected


def test_durations() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("500ms") == timedelta(milliseconds=500)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("5 minutes")


def sample(at: float, requests: float, errors: float = 0, fast: bool = True) -> Sample:
    under = requests if fast else 0
    buckets = {0.01: under, 1.0: requests, math.inf: requests}
    return Sample(T0 + timedelta(seconds=at), Counters(requests, errors, buckets))


def test_a_healthy_canary_goes_through_every_step_to_promotion() -> None:
    state = start("better", ROLLOUT)
    assert (state.step, state.weight, state.phase) == (1, 50, "Starting")
    decision = tick(state, ROLLOUT, T0, ready=False, sample=None)
    assert decision.action == WAIT and decision.state.phase == "Starting"
    state = tick(state, ROLLOUT, T0, ready=True, sample=None).state
    assert state.phase == "Analysing" and state.step_started_at == T0
    assert scrape_due(state, ROLLOUT, T0)
    state = tick(state, ROLLOUT, T0, True, sample(0, 0)).state  # the window starts
    assert not scrape_due(state, ROLLOUT, T0 + timedelta(seconds=4))
    decision = tick(state, ROLLOUT, T0 + timedelta(seconds=5), True, sample(5, 50))
    assert decision.action == WAIT and decision.state.analyses_passed == 1  # the pause is not over
    decision = tick(decision.state, ROLLOUT, T0 + timedelta(seconds=10), True, sample(10, 100))
    assert decision.action == ADVANCE
    state = decision.state
    assert (state.step, state.weight, state.phase, state.sample) == (2, 100, "Starting", None)
    assert state.last_analysis.verdict == ADVANCE and state.last_analysis.requests == 50

    state = tick(state, ROLLOUT, T0 + timedelta(seconds=11), True, None).state
    state = tick(state, ROLLOUT, T0 + timedelta(seconds=11), True, sample(11, 100)).state
    decision = tick(state, ROLLOUT, T0 + timedelta(seconds=16), True, sample(16, 160))
    assert decision.action == PROMOTE and decision.state.phase == "Promoting"
    assert tick(decision.state, ROLLOUT, T0 + timedelta(seconds=20), True, None).action == WAIT


def test_errors_roll_back_with_the_figures_and_few_requests_widen_the_window() -> None:
    state = tick(start("bad", ROLLOUT), ROLLOUT, T0, True, None).state
    state = tick(state, ROLLOUT, T0, True, sample(0, 0)).state
    decision = tick(state, ROLLOUT, T0 + timedelta(seconds=5), True, sample(5, 4, errors=4))
    assert decision.action == WAIT and "4 inference requests, 10 needed" in decision.message
    assert decision.state.sample == state.sample  # the window keeps its start
    decision = tick(decision.state, ROLLOUT, T0 + timedelta(seconds=10), True, sample(10, 20, errors=8))
    assert decision.action == ROLLBACK
    assert decision.message.startswith("error rate 0.4000 > 0.1")
    assert decision.state.last_analysis.error_rate == pytest.approx(0.4)


def test_slow_canary_rolls_back_on_latency() -> None:
    state = tick(start("slow", ROLLOUT), ROLLOUT, T0, True, None).state
    state = tick(state, ROLLOUT, T0, True, sample(0, 0)).state
    decision = tick(state, ROLLOUT, T0 + timedelta(seconds=5), True, sample(5, 20, fast=False))
    assert decision.action == ROLLBACK and "p95 latency" in decision.message
    assert decision.reason == ANALYSIS_FAILED


def test_a_canary_that_never_becomes_ready_is_rolled_back_at_the_progress_deadline() -> None:
    rollout = ROLLOUT.model_copy(update={"progress_deadline": "2m"})
    state = start("crashing", rollout)
    for seconds in (0, 60, 119):
        decision = tick(state, rollout, T0 + timedelta(seconds=seconds), ready=False, sample=None)
        assert decision.action == WAIT and decision.state.waiting_since == T0
        state = decision.state
    decision = tick(state, rollout, T0 + timedelta(seconds=120), ready=False, sample=None)
    assert decision.action == ROLLBACK and decision.reason == PROGRESS_DEADLINE_EXCEEDED
    assert decision.message == "step 1: the replicas were not all ready within 2m"


def test_the_progress_deadline_counts_only_while_replicas_are_not_ready() -> None:
    rollout = ROLLOUT.model_copy(update={"progress_deadline": "2m"})
    state = tick(start("slow-start", rollout), rollout, T0, ready=False, sample=None).state
    state = tick(state, rollout, T0 + timedelta(seconds=100), ready=True, sample=None).state
    assert state.phase == "Analysing" and state.waiting_since is None
    # A pod lost later starts a new wait: the deadline counts from then, not from the step's start.
    state = tick(state, rollout, T0 + timedelta(seconds=200), ready=False, sample=None).state
    decision = tick(state, rollout, T0 + timedelta(seconds=250), ready=False, sample=None)
    assert decision.action == WAIT and decision.state.waiting_since == T0 + timedelta(seconds=200)


def test_metrics_that_cannot_be_read_roll_back_at_the_progress_deadline_not_never() -> None:
    rollout = ROLLOUT.model_copy(update={"progress_deadline": "1m"})
    state = tick(start("unmeasurable", rollout), rollout, T0, ready=True, sample=None).state
    assert state.phase == "Analysing"
    for seconds in (5, 30, 59):  # every read was due, and failed
        decision = tick(state, rollout, T0 + timedelta(seconds=seconds), ready=True, sample=None)
        assert decision.action == WAIT and "could not be read" in decision.message
    decision = tick(state, rollout, T0 + timedelta(seconds=60), ready=True, sample=None)
    assert decision.action == ROLLBACK and decision.reason == METRICS_UNAVAILABLE
    assert decision.message.startswith("step 1: the candidate's /metrics could not be read for 1m")
    # After a good read the deadline counts from that read.
    state = tick(state, rollout, T0 + timedelta(seconds=10), True, sample(10, 0)).state
    assert tick(state, rollout, T0 + timedelta(seconds=69), True, None).action == WAIT
    assert tick(state, rollout, T0 + timedelta(seconds=70), True, None).action == ROLLBACK


def test_pod_addresses_make_metrics_urls_ipv6_in_brackets() -> None:
    assert metrics_url("10.1.2.3") == "http://10.1.2.3:8080/metrics"
    assert metrics_url("fd00:10:244::5") == "http://[fd00:10:244::5]:8080/metrics"
