"""The search's status document: trial counts by state, the best trial, the study name.

The same shape is the TuningJob's `status` on a cluster and `result.json` locally (which adds every
trial's record).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from crucible.api.tuningjob import Direction, TuningJobSpec
from crucible.tuning.budget import TrialTally
from crucible.tuning.outcome import REASON_ATTR

TRAINING_RUN_ATTR = "trainingRun"
BASELINE_ATTR = "baseline"
NAME_LIMIT = 63  # a DNS label: TrainingRun names become Job and pod labels


def trial_run_name(job_name: str, number: int) -> str:
    """The TrainingRun of trial `number`, e.g. `digits-trial-007`; the job part is shortened to
    keep the whole a DNS label."""
    suffix = f"-trial-{number:03d}"
    return job_name[: NAME_LIMIT - len(suffix)].rstrip("-.") + suffix


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def best_trial(trials: Sequence[FrozenTrial], direction: Direction) -> FrozenTrial | None:
    """The complete trial with the best value; the earliest one wins a tie."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and _finite(t.value)]
    if not complete:
        return None
    sign = -1.0 if direction == "maximize" else 1.0
    return min(complete, key=lambda t: (sign * t.value, t.number))  # type: ignore[operator]


def trial_record(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as people read it: number, state, value, params, its TrainingRun, why it ended."""
    record: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value if trial.state == TrialState.COMPLETE else None,
        "params": dict(trial.params),
        "trainingRun": trial.user_attrs.get(TRAINING_RUN_ATTR),
        "epochs": len(trial.intermediate_values),
    }
    if trial.user_attrs.get(BASELINE_ATTR):
        record["baseline"] = True
    if trial.user_attrs.get(REASON_ATTR):
        record["reason"] = trial.user_attrs[REASON_ATTR]
    if trial.datetime_start and trial.datetime_complete:
        record["seconds"] = round((trial.datetime_complete - trial.datetime_start).total_seconds(), 2)
    return record


def summarize(
    study_name: str,
    trials: Sequence[FrozenTrial],
    spec: TuningJobSpec,
    phase: str,
    reason: str = "",
) -> dict[str, Any]:
    """The status document; `phase` is Running until the search is over."""
    direction = spec.objective.resolved_direction()
    best = best_trial(trials, direction)
    baseline = next((t for t in trials if t.user_attrs.get(BASELINE_ATTR)), None)
    return {
        "phase": phase,
        "reason": reason,
        "studyName": study_name,
        "objective": {"metric": spec.objective.metric, "direction": direction},
        "trialCounts": TrialTally.of(t.state for t in trials).as_status(),
        "maxTrials": spec.max_trials,
        "bestTrial": _brief(best) if best else None,
        "baselineTrial": _brief(baseline) if baseline else None,
    }


def _brief(trial: FrozenTrial) -> dict[str, Any]:
    record = trial_record(trial)
    return {key: record[key] for key in ("number", "state", "value", "params", "trainingRun")}
