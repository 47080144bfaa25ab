"""The status document: counts by state, the best trial and its TrainingRun, the study name."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from crucible.tuning.summary import best_trial, summarize, trial_run_name
from tests.tuning.jobs import job_spec

LR = "hyperparameters.learningRate"


def _trial(
    state: TrialState, value: float | None = None, lr: float = 0.01, **attrs
) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=state,
        value=value,
        params={LR: lr},
        distributions={LR: FloatDistribution(0.001, 0.1)},
        user_attrs=attrs,
        intermediate_values={1: 0.5} if state == TrialState.PRUNED else None,
    )


def _study(*trials: optuna.trial.FrozenTrial, direction: str = "maximize") -> optuna.Study:
    study = optuna.create_study(study_name="digits", direction=direction)
    study.add_trials(trials)
    return study


def test_trial_run_names_are_dns_labels():
    assert trial_run_name("digits", 7) == "digits-trial-007"
    long = trial_run_name("a" * 80, 1234)
    assert long.endswith("-trial-1234") and len(long) == 63


def test_best_trial_follows_the_direction_and_ignores_unfinished_ones():
    trials = _study(
        _trial(TrialState.COMPLETE, 0.9),
        _trial(TrialState.COMPLETE, 0.95),
        _trial(TrialState.FAIL),
        _trial(TrialState.PRUNED),
        _trial(TrialState.COMPLETE, 0.95),
    ).trials
    assert best_trial(trials, "maximize").number == 1  # the earliest of a tie
    assert best_trial(trials, "minimize").number == 0
    assert best_trial([trials[2]], "maximize") is None


def test_summary_has_counts_best_and_baseline():
    study = _study(
        _trial(TrialState.COMPLETE, 0.93, lr=0.01, baseline=True, trainingRun="digits-trial-000"),
        _trial(TrialState.COMPLETE, 0.97, lr=0.02, trainingRun="digits-trial-001"),
        _trial(TrialState.PRUNED, trainingRun="digits-trial-002"),
        _trial(TrialState.FAIL, reason="debug gate failed", trainingRun="digits-trial-003"),
    )
    summary = summarize("digits", study.trials, job_spec(maxTrials=4), "Succeeded", "reached maxTrials (4)")
    assert summary["studyName"] == "digits"
    assert summary["trialCounts"] == {"complete": 2, "pruned": 1, "failed": 1, "running": 0, "waiting": 0}
    assert summary["bestTrial"] == {
        "number": 1, "state": "COMPLETE", "value": 0.97, "params": {LR: 0.02}, "trainingRun": "digits-trial-001",
    }  # fmt: skip
    assert summary["baselineTrial"]["number"] == 0 and summary["baselineTrial"]["value"] == 0.93
    assert summary["objective"] == {"metric": "valBalancedAccuracy", "direction": "maximize"}
