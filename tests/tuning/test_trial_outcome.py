"""How a trial's end is told to the study: a failed gate is a failed trial, never a crash of the search."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from crucible.api.result import GateReport, TrainResult
from crucible.api.tuningjob import ObjectiveSpec
from crucible.tuning.outcome import (
    TrialOutcome,
    crashed_outcome,
    intermediate_value,
    outcome_of_result,
    pruned_outcome,
    tell,
)
from crucible.tuning.summary import best_trial

ACCURACY = ObjectiveSpec(metric="accuracy")


def _succeeded(**metrics: float) -> TrainResult:
    return TrainResult(phase="Succeeded", metrics=metrics)


def test_a_succeeded_run_completes_with_its_metric():
    assert outcome_of_result(_succeeded(accuracy=0.97, loss=0.1), ACCURACY) == TrialOutcome(
        TrialState.COMPLETE, 0.97
    )
    assert outcome_of_result(_succeeded(accuracy=0.97, loss=0.1), ObjectiveSpec(metric="loss")).value == 0.1


def test_a_failed_gate_fails_the_trial_with_the_gates_reason():
    result = TrainResult(
        phase="Failed",
        reason="crossValidation gate failed: mean = 0.41 (must be >= 0.9)",
        gates={"crossValidation": GateReport(passed=False)},
        metrics={"accuracy": 0.5},
    )
    outcome = outcome_of_result(result, ACCURACY)
    assert outcome.state == TrialState.FAIL
    assert outcome.value is None
    assert outcome.reason.startswith("crossValidation gate failed")


@pytest.mark.parametrize("metrics", [{}, {"accuracy": math.nan}, {"accuracy": math.inf}])
def test_a_missing_or_non_finite_objective_fails_the_trial(metrics):
    outcome = outcome_of_result(_succeeded(**metrics), ACCURACY)
    assert outcome.state == TrialState.FAIL
    assert "objective accuracy is" in outcome.reason


def test_pruned_and_crashed_outcomes():
    assert pruned_outcome(2) == TrialOutcome(
        TrialState.PRUNED, None, "pruned after epoch 2: worse than earlier trials at that point"
    )
    crashed = crashed_outcome(RuntimeError("CUDA out of memory"))
    assert (crashed.state, crashed.reason) == (TrialState.FAIL, "RuntimeError: CUDA out of memory")


def test_intermediate_values_exist_only_for_per_epoch_metrics():
    figures = {"valBalancedAccuracy": 0.9, "valMacroF1": 0.89, "valLoss": 0.3, "trainLoss": 0.2}
    assert intermediate_value(figures, ObjectiveSpec()) == 0.9
    assert intermediate_value(figures, ObjectiveSpec(metric="valLoss")) == 0.3
    assert intermediate_value(figures, ObjectiveSpec(metric="cvMean")) is None
    # Held-out figures are never reported per epoch: a search selecting on them is not pruned.
    assert intermediate_value({"accuracy": 0.9, **figures}, ACCURACY) is None


def test_told_failures_leave_the_search_going():
    study = optuna.create_study(direction="maximize")
    failed = study.ask()
    tell(study, failed, outcome_of_result(TrainResult(phase="Failed", reason="debug gate failed"), ACCURACY))
    pruned = study.ask()
    pruned.report(0.2, 1)
    tell(study, pruned, pruned_outcome(1))
    complete = study.ask()
    tell(study, complete, outcome_of_result(_succeeded(accuracy=0.9), ACCURACY))
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.PRUNED, TrialState.COMPLETE]
    assert study.trials[0].user_attrs["reason"] == "debug gate failed"
    assert best_trial(study.trials, "maximize").number == 2
    assert study.ask().number == 3  # the study takes more trials
