"""Every sampler and pruner the spec allows, driven through ask-and-tell as the runners drive them."""

from __future__ import annotations

import optuna
import pytest

from crucible.tuning.algorithms import build_pruner, default_startup_trials, sampler_seed
from crucible.tuning.space import distributions
from crucible.tuning.study import open_study
from tests.tuning.jobs import job_spec

SPACE = {
    "hyperparameters.learningRate": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
    "hyperparameters.batchSize": {"type": "categorical", "choices": [32, 64]},
}
GRID = {
    "hyperparameters.learningRate": {"type": "float", "low": 0.01, "high": 0.03, "step": 0.01},
    "hyperparameters.batchSize": {"type": "categorical", "choices": [32, 64]},
}


def _drive(spec, trials: int) -> optuna.Study:
    """Ask and tell with a made-up objective: lower learning rates score better."""
    study = open_study(spec, optuna.storages.InMemoryStorage(), "drive")
    for _ in range(trials):
        trial = study.ask(fixed_distributions=distributions(spec))
        study.tell(trial, 1.0 - trial.params["hyperparameters.learningRate"])
    return study


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes"])
def test_each_sampler_proposes_values_inside_the_space(sampler):
    study = _drive(job_spec(searchSpace=SPACE, sampler={"type": sampler, "seed": 1}, maxTrials=8), 8)
    for trial in study.trials:
        assert 0.001 <= trial.params["hyperparameters.learningRate"] <= 0.1
        assert trial.params["hyperparameters.batchSize"] in (32, 64)


def test_the_grid_visits_every_point_once_and_its_end_does_not_raise():
    spec = job_spec(searchSpace=GRID, sampler={"type": "grid", "seed": 0}, maxTrials=20)
    study = _drive(spec, 6)
    points = {
        (t.params["hyperparameters.learningRate"], t.params["hyperparameters.batchSize"])
        for t in study.trials
    }
    assert points == {(lr, bs) for lr in (0.01, 0.02, 0.03) for bs in (32, 64)}
    assert not study.get_trials(states=(optuna.trial.TrialState.WAITING,))  # no baseline for a grid


@pytest.mark.parametrize(
    ("pruner", "expected"),
    [
        ({"type": "median", "nStartupTrials": 2, "nWarmupSteps": 1}, optuna.pruners.MedianPruner),
        ({"type": "hyperband", "minResource": 1, "reductionFactor": 2}, optuna.pruners.HyperbandPruner),
        ({"type": "none"}, optuna.pruners.NopPruner),
    ],
)
def test_pruners_are_built_from_the_spec(pruner, expected):
    assert isinstance(build_pruner(job_spec(pruner=pruner)), expected)


def test_the_median_pruner_stops_a_trial_behind_the_others():
    spec = job_spec(searchSpace=SPACE, pruner={"type": "median", "nStartupTrials": 2}, baselineTrial=False)
    study = open_study(spec, optuna.storages.InMemoryStorage(), "median")
    for value in (0.9, 0.8):
        trial = study.ask(fixed_distributions=distributions(spec))
        trial.report(value, 1)
        study.tell(trial, value)
    good, bad = (
        study.ask(fixed_distributions=distributions(spec)),
        study.ask(fixed_distributions=distributions(spec)),
    )
    good.report(0.95, 1)
    bad.report(0.1, 1)
    assert not good.should_prune() and bad.should_prune()


def test_hyperband_runs_through_ask_and_tell():
    spec = job_spec(searchSpace=SPACE, pruner={"type": "hyperband", "minResource": 1}, baselineTrial=False)
    study = open_study(spec, optuna.storages.InMemoryStorage(), "hyperband")
    for number in range(6):
        trial = study.ask(fixed_distributions=distributions(spec))
        for epoch in (1, 2, 3):
            trial.report(0.1 * number + 0.01 * epoch, epoch)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, 0.1 * number)
    states = {trial.state for trial in study.trials}
    assert len(study.trials) == 6 and states <= {
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
    }


def test_seeds_and_startup_trials():
    assert (
        default_startup_trials(12) == 3
        and default_startup_trials(4) == 2
        and default_startup_trials(100) == 10
    )
    assert sampler_seed(None, 5) is None
    assert sampler_seed(1, 3) == 4 and sampler_seed(2**31 - 1, 1) == 0
