"""How a trial ends, as the study is told: a pure mapping from what the trainer returned.

- Succeeded with a finite objective -> COMPLETE with that value.
- Failed (a gate failed, training diverged, bad data) -> FAIL: a failed trial, not a crash of the
  search; the search goes on and counts it against maxFailedTrials.
- Stopped by the pruner -> PRUNED, at the epoch it reached.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from crucible.api.result import TrainResult
from crucible.api.tuningjob import PER_EPOCH_METRICS, ObjectiveSpec

REASON_ATTR = "reason"
# Set by a trial pod on its own trial when the pruner stopped it: its TrainingRun ends Failed like any
# failed run, and this is how the operator tells the study PRUNED instead of FAIL.
PRUNED_EPOCH_ATTR = "crucible.prunedAtEpoch"


@dataclass(frozen=True)
class TrialOutcome:
    state: TrialState
    value: float | None = None
    reason: str = ""


def objective_value(result: TrainResult, objective: ObjectiveSpec) -> float | None:
    """The objective metric of a result; None when missing or not a finite number."""
    value = result.metrics.get(objective.metric)
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def outcome_of_result(result: TrainResult, objective: ObjectiveSpec) -> TrialOutcome:
    if result.phase != "Succeeded":
        return TrialOutcome(TrialState.FAIL, reason=result.reason or "the training run failed")
    value = objective_value(result, objective)
    if value is None:
        got = result.metrics.get(objective.metric)
        missing = "missing" if got is None else f"{got}"
        return TrialOutcome(TrialState.FAIL, reason=f"objective {objective.metric} is {missing}")
    return TrialOutcome(TrialState.COMPLETE, value=value)


def pruned_outcome(epoch: int | None) -> TrialOutcome:
    where = f" after epoch {epoch}" if epoch else ""
    return TrialOutcome(TrialState.PRUNED, reason=f"pruned{where}: worse than earlier trials at that point")


def crashed_outcome(error: BaseException) -> TrialOutcome:
    """An unexpected error inside one trial fails that trial only."""
    return TrialOutcome(TrialState.FAIL, reason=f"{type(error).__name__}: {error}")


def intermediate_value(figures: Mapping[str, float], objective: ObjectiveSpec) -> float | None:
    """The value to report after an epoch, when the objective has a per-epoch figure (cvMean and
    trainSeconds have none, so such searches are never pruned)."""
    if objective.metric not in PER_EPOCH_METRICS:
        return None
    value = figures.get(objective.metric)
    return None if value is None else float(value)


def tell(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> optuna.trial.FrozenTrial:
    """Record the outcome: its reason as a user attribute, then the state (and value) to the study."""
    if outcome.reason:
        trial.set_user_attr(REASON_ATTR, outcome.reason[:1000])
    values = outcome.value if outcome.state == TrialState.COMPLETE else None
    return study.tell(trial, values, state=outcome.state, skip_if_finished=True)
