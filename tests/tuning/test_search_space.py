"""Sampled values applied to the template; the space as Optuna distributions; the baseline point."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import ValidationError

from crucible.tuning.space import apply_params, baseline_params, contains, distributions, grid_search_space
from tests.tuning.jobs import job_spec

SPACE = {
    "hyperparameters.learningRate": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
    "hyperparameters.epochs": {"type": "int", "low": 2, "high": 6, "step": 2},
    "hyperparameters.optimizer": {"type": "categorical", "choices": ["adamw", "sgd"]},
    "hyperparameters.augmentation.randomCrop": {"type": "categorical", "choices": [True, False]},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
}


def test_apply_params_sets_nested_fields_and_keeps_the_rest():
    spec = job_spec(searchSpace=SPACE)
    params = {
        "hyperparameters.learningRate": 0.0123,
        "hyperparameters.epochs": 4,
        "hyperparameters.optimizer": "sgd",
        "hyperparameters.augmentation.randomCrop": True,
        "model.dropout": 0.3,
    }
    trial_spec = apply_params(spec.template, params)
    assert trial_spec.hyperparameters.learning_rate == 0.0123
    assert trial_spec.hyperparameters.epochs == 4
    assert trial_spec.hyperparameters.optimizer == "sgd"
    assert trial_spec.hyperparameters.augmentation.random_crop is True
    assert trial_spec.model.dropout == 0.3
    # Everything else is the template's, which is left untouched.
    assert trial_spec.hyperparameters.batch_size == spec.template.hyperparameters.batch_size
    assert trial_spec.model.architecture == "tiny_cnn"
    assert spec.template.hyperparameters.optimizer == "adamw"


def test_apply_params_refuses_a_value_the_trainingrun_refuses():
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        apply_params(job_spec().template, {"hyperparameters.learningRate": 1000.0})


def test_distributions_follow_the_spec():
    found = distributions(job_spec(searchSpace=SPACE))
    assert found["hyperparameters.learningRate"] == FloatDistribution(0.001, 0.1, log=True)
    assert found["hyperparameters.epochs"] == IntDistribution(2, 6, step=2)
    assert found["hyperparameters.optimizer"] == CategoricalDistribution(("adamw", "sgd"))
    assert found["model.dropout"] == FloatDistribution(0.0, 0.5, step=0.1)


def test_grid_lists_every_value():
    discrete = {path: param for path, param in SPACE.items() if path != "hyperparameters.learningRate"}
    grid = grid_search_space(job_spec(searchSpace=discrete, sampler={"type": "grid"}))
    assert grid["hyperparameters.epochs"] == [2, 4, 6]
    assert grid["model.dropout"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert grid["hyperparameters.optimizer"] == ["adamw", "sgd"]


def test_baseline_is_the_templates_values_when_they_lie_in_the_space():
    spec = job_spec()  # template: learningRate 0.01, batchSize 64
    assert baseline_params(spec) == {"hyperparameters.learningRate": 0.01, "hyperparameters.batchSize": 64}
    outside = job_spec(
        searchSpace={"hyperparameters.learningRate": {"type": "float", "low": 0.05, "high": 0.1}}
    )
    assert baseline_params(outside) is None


@pytest.mark.parametrize(
    ("param", "value", "inside"),
    [
        ({"type": "int", "low": 2, "high": 6, "step": 2}, 4, True),
        ({"type": "int", "low": 2, "high": 6, "step": 2}, 3, False),
        ({"type": "float", "low": 0.0, "high": 0.5, "step": 0.1}, 0.3, True),
        ({"type": "float", "low": 0.0, "high": 0.5}, 0.55, False),
        ({"type": "categorical", "choices": [32, 64]}, 64, True),
        ({"type": "categorical", "choices": [32, 64]}, 16, False),
    ],
)
def test_contains(param, value, inside):
    from crucible.api.tuningjob import ParameterSpec

    assert contains(ParameterSpec.model_validate(param), value) is inside
