"""The canary step machine (pure): replica split per step, and what one tick of analysis leads to.

Traffic follows the replica ratio (the Service selects both tracks; no mesh), so a weight is reached
only approximately: 25% of 2 replicas is 1 canary beside the stable ones. The stable track never drops
to 0 replicas while a canary runs, so the Service always has ready endpoints; it takes the candidate
only on promotion, and the canary goes only once the new stable is ready.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from crucible.api.modeldeployment import RolloutSpec
from crucible.api.status import AnalysisStatus, CanaryStatus, MetricsSample
from crucible.operator.kube.durations import parse_duration
from crucible.operator.modeldeployment.rollout.analysis import (
    FAIL,
    INCONCLUSIVE,
    Analysis,
    Counters,
    Sample,
    analyse,
)

WAIT, ADVANCE, PROMOTE, ROLLBACK = "Wait", "Advance", "Promote", "Rollback"
ANALYSIS_FAILED, PROGRESS_DEADLINE_EXCEEDED = "AnalysisFailed", "ProgressDeadlineExceeded"
METRICS_UNAVAILABLE = "MetricsUnavailable"


def split(replicas: int, weight: int) -> tuple[int, int]:
    """(stable, canary) replicas for a weight in percent: at least one of each while a canary runs."""
    canary = min(replicas, max(1, math.ceil(replicas * weight / 100)))
    return max(1, replicas - canary), canary


def start(candidate: str, rollout: RolloutSpec) -> CanaryStatus:
    return CanaryStatus(
        candidate=candidate,
        step=1,
        steps=len(rollout.steps),
        weight=rollout.steps[0].weight,
        phase="Starting",
    )


def to_sample(stored: MetricsSample) -> Sample:
    buckets = {float(le): count for le, count in stored.buckets.items()}
    return Sample(stored.time, Counters(stored.requests, stored.errors, buckets))


def to_stored(sample: Sample) -> MetricsSample:
    counters = sample.counters
    buckets = {repr(le) if le != math.inf else "+Inf": count for le, count in counters.buckets.items()}
    return MetricsSample(
        time=sample.time, requests=counters.requests, errors=counters.errors, buckets=buckets
    )


def scrape_due(state: CanaryStatus, rollout: RolloutSpec, now: datetime) -> bool:
    """Whether the candidate's metrics should be read on this tick (no read while pods are starting)."""
    if state.phase != "Analysing":
        return False
    if state.sample is None:
        return True
    return now - state.sample.time >= parse_duration(rollout.analysis.interval)


@dataclass(frozen=True)
class Decision:
    action: str  # WAIT, ADVANCE, PROMOTE or ROLLBACK
    state: CanaryStatus
    message: str = ""
    reason: str = ""  # of a rollback, as one CamelCase word


def _record(state: CanaryStatus, now: datetime, verdict: str, analysis: Analysis) -> AnalysisStatus:
    return AnalysisStatus(
        time=now,
        verdict=verdict,
        requests=analysis.requests,
        error_rate=analysis.error_rate,
        latency_p95_ms=analysis.latency_p95_ms,
        message=analysis.message,
    )


def _without_metrics(state: CanaryStatus, rollout: RolloutSpec, now: datetime) -> Decision:
    """No counters this tick. When a read was due, it failed (a NetworkPolicy, an unreachable pod IP):
    wait, but not forever; past the progress deadline since the last good read (or the step's start)
    the candidate is rolled back, since a canary nobody can measure must not be promoted."""
    last_read = state.sample.time if state.sample is not None else state.step_started_at
    if not scrape_due(state, rollout, now) or last_read is None:
        return Decision(WAIT, state)
    if now - last_read < parse_duration(rollout.progress_deadline):
        return Decision(WAIT, state, "the candidate's metrics could not be read; trying again")
    message = (
        f"step {state.step}: the candidate's /metrics could not be read for {rollout.progress_deadline}"
        " (is a NetworkPolicy in the way?)"
    )
    return Decision(ROLLBACK, state, message, METRICS_UNAVAILABLE)


def tick(
    state: CanaryStatus, rollout: RolloutSpec, now: datetime, ready: bool, sample: Sample | None
) -> Decision:
    """One step of the machine. `ready`: both tracks have their replicas of this step ready; `sample`:
    the candidate pods' counters read now (None when no read was due, or it failed)."""
    if state.phase == "Promoting":
        return Decision(WAIT, state, "the stable track is taking the candidate")
    if not ready:
        since = state.waiting_since or now
        deadline = parse_duration(rollout.progress_deadline)
        if now - since >= deadline:
            message = f"step {state.step}: the replicas were not all ready within {rollout.progress_deadline}"
            return Decision(ROLLBACK, state, message, PROGRESS_DEADLINE_EXCEEDED)
        waiting = state.model_copy(update={"phase": "Starting", "waiting_since": since})
        return Decision(WAIT, waiting, "waiting for ready replicas")
    if state.phase == "Starting":
        update = {"phase": "Analysing", "step_started_at": now, "sample": None, "waiting_since": None}
        started = state.model_copy(update=update)
        return Decision(WAIT, started, f"step {state.step}: {state.weight}% on the candidate")
    if sample is None:
        return _without_metrics(state, rollout, now)
    if state.sample is None:  # the window starts here
        return Decision(WAIT, state.model_copy(update={"sample": to_stored(sample)}))
    analysis = analyse(sample.counters.since(to_sample(state.sample).counters), rollout.analysis)
    if analysis.result == FAIL:
        failed = state.model_copy(update={"last_analysis": _record(state, now, ROLLBACK, analysis)})
        return Decision(ROLLBACK, failed, analysis.message, ANALYSIS_FAILED)
    if analysis.result == INCONCLUSIVE:  # the window grows until it holds enough requests
        waiting = state.model_copy(update={"last_analysis": _record(state, now, WAIT, analysis)})
        return Decision(WAIT, waiting, analysis.message)
    passed = state.analyses_passed + 1
    assert state.step_started_at is not None
    paused = now - state.step_started_at >= parse_duration(rollout.steps[state.step - 1].pause)
    if not paused:
        kept = {"analyses_passed": passed, "sample": to_stored(sample)}
        kept["last_analysis"] = _record(state, now, WAIT, analysis)
        return Decision(WAIT, state.model_copy(update=kept), analysis.message)
    if state.step >= len(rollout.steps):
        done = {"phase": "Promoting", "analyses_passed": passed, "sample": None}
        done["last_analysis"] = _record(state, now, PROMOTE, analysis)
        return Decision(PROMOTE, state.model_copy(update=done), analysis.message)
    following = rollout.steps[state.step]
    advanced = {
        "step": state.step + 1,
        "weight": following.weight,
        "phase": "Starting",
        "step_started_at": None,
        "analyses_passed": 0,
        "sample": None,
        "last_analysis": _record(state, now, ADVANCE, analysis),
    }
    return Decision(ADVANCE, state.model_copy(update=advanced), analysis.message)
