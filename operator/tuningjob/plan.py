"""One reconcile step of a TuningJob, decided from the study's trials and the child TrainingRuns
(pure: no API, no storage).

- A RUNNING trial whose child finished is told: Succeeded -> COMPLETE with the objective, a pruned
  run -> PRUNED, any other failure (a gate, the trainer, an invalid spec) -> FAIL.
- A RUNNING trial without a child was asked for by an operator that stopped before creating it: its
  child is created now, under the same number and with the same parameters.
- Then new trials are asked for while fewer than `parallelism` run and the budget allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from optuna.trial import FrozenTrial, TrialState

from crucible.api.result import TrainResult
from crucible.api.tuningjob import TuningJobSpec
from crucible.tuning.budget import TrialTally, final_phase, free_slots, stop_reason
from crucible.tuning.outcome import PRUNED_EPOCH_ATTR, TrialOutcome, outcome_of_result, pruned_outcome

FINAL_RUN_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class Step:
    tell: dict[int, TrialOutcome] = field(default_factory=dict)  # trial number -> outcome
    create: list[int] = field(default_factory=list)  # RUNNING trials whose child is missing
    ask: int = 0  # new trials to ask for now


def child_outcome(trial: FrozenTrial, run_status: Mapping, spec: TuningJobSpec) -> TrialOutcome | None:
    """How the trial ended, from its TrainingRun's status; None while the run has not finished."""
    phase = run_status.get("phase")
    if phase not in FINAL_RUN_PHASES:
        return None
    if phase == "Failed" and PRUNED_EPOCH_ATTR in trial.user_attrs:
        return pruned_outcome(int(trial.user_attrs[PRUNED_EPOCH_ATTR]))
    metrics = {key: value for key, value in (run_status.get("metrics") or {}).items() if value is not None}
    result = TrainResult(phase=phase, reason=run_status.get("reason") or "", metrics=metrics)
    return outcome_of_result(result, spec.objective)


def tally_after(trials: Sequence[FrozenTrial], told: Mapping[int, TrialOutcome]) -> TrialTally:
    return TrialTally.of(told[t.number].state if t.number in told else t.state for t in trials)


def plan_step(
    trials: Sequence[FrozenTrial],
    children: Mapping[int, Mapping],
    spec: TuningJobSpec,
    elapsed_seconds: float,
) -> Step:
    """`children`: trial number -> its TrainingRun's status ({} when it has none yet)."""
    tell: dict[int, TrialOutcome] = {}
    create: list[int] = []
    for trial in trials:
        if trial.state != TrialState.RUNNING:
            continue
        if trial.number not in children:
            create.append(trial.number)
        elif (outcome := child_outcome(trial, children[trial.number], spec)) is not None:
            tell[trial.number] = outcome
    slots = free_slots(tally_after(trials, tell), spec, elapsed_seconds)
    return Step(tell=tell, create=create, ask=slots)


@dataclass(frozen=True)
class Verdict:
    """Where the search stands after a step."""

    phase: str  # Running, Succeeded or Failed
    reason: str


def verdict(tally: TrialTally, spec: TuningJobSpec, elapsed_seconds: float) -> Verdict:
    reason = stop_reason(tally, spec, elapsed_seconds)
    if tally.running or reason is None:
        waiting = f"; no new trial: {reason}" if reason else ""
        return Verdict("Running", f"{tally.running} trials running{waiting}")
    phase, why = final_phase(tally, spec, reason)
    return Verdict(phase, why)
