"""The search space as Optuna distributions, and sampled values applied to the template."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from crucible.api.template import template_value, with_values
from crucible.api.trainingrun import TrainingRunSpec
from crucible.api.tuningjob import ParameterSpec, TuningJobSpec


def distribution(param: ParameterSpec) -> BaseDistribution:
    """The Optuna distribution of one parameter (the spec has been validated)."""
    if param.type == "categorical":
        return CategoricalDistribution(tuple(param.choices or ()))
    assert param.low is not None and param.high is not None
    if param.type == "int":
        return IntDistribution(int(param.low), int(param.high), log=param.log, step=int(param.step or 1))
    return FloatDistribution(param.low, param.high, log=param.log, step=param.step)


def distributions(spec: TuningJobSpec) -> dict[str, BaseDistribution]:
    """Parameter name (the template path) -> distribution, for `study.ask(fixed_distributions=...)`."""
    return {path: distribution(param) for path, param in spec.search_space.items()}


def apply_params(template: TrainingRunSpec, params: Mapping[str, Any]) -> TrainingRunSpec:
    """The trial's TrainingRun spec: the template with each sampled value set at its path."""
    return with_values(template, params)


def contains(param: ParameterSpec, value: Any) -> bool:
    """Whether a sampler could produce `value` for this parameter."""
    if param.type == "categorical":
        return value in (param.choices or [])
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    assert param.low is not None and param.high is not None
    if not param.low <= value <= param.high:
        return False
    if param.type == "int" and not float(value).is_integer():
        return False
    step = param.step if param.type == "float" else (param.step or 1)
    if step is None:
        return True
    offset = (value - param.low) / step
    return math.isclose(offset, round(offset), abs_tol=1e-9)


def baseline_params(spec: TuningJobSpec) -> dict[str, Any] | None:
    """The template's own values for the searched paths, when all of them lie in the search space;
    None otherwise (the baseline cannot be told to the study as a point of the space)."""
    values = {path: template_value(spec.template, path) for path in spec.search_space}
    if all(contains(spec.search_space[path], value) for path, value in values.items()):
        return values
    return None


def grid_search_space(spec: TuningJobSpec) -> dict[str, list[Any]]:
    """Every value of every parameter, for Optuna's GridSampler."""
    return {path: param.grid() for path, param in spec.search_space.items()}
