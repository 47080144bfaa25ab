"""The Optuna sampler and pruner a TuningJob asks for."""

from __future__ import annotations

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler

from crucible.api.tuningjob import TuningJobSpec
from crucible.tuning.space import grid_search_space

SEED_LIMIT = 2**31


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler ends `study.optimize` once every point is taken, by calling
    `study.stop()`, which raises outside `optimize`. Ask-and-tell drivers stop by themselves:
    the budget counts the grid's points (`budget.trial_limit`)."""

    def after_trial(self, study, trial, state, values) -> None:  # type: ignore[no-untyped-def]
        pass


def default_startup_trials(max_trials: int) -> int:
    """Random trials before a model-based sampler takes over: enough to fit it, few enough that a
    small budget still gets guided trials (Optuna's own default, 10, would use up 12 trials)."""
    return min(10, max(2, max_trials // 4))


def sampler_seed(seed: int | None, offset: int) -> int | None:
    """A distinct seed for each sampler instance of one search: a sampler re-created with the same
    seed (a resumed search, a second worker) would otherwise draw the same values again."""
    return None if seed is None else (seed + offset) % SEED_LIMIT


def build_sampler(spec: TuningJobSpec, seed_offset: int = 0) -> BaseSampler:
    """`seed_offset`: how many trials the study already has, plus a stride per worker process."""
    seed = sampler_seed(spec.sampler.seed, seed_offset)
    startup = spec.sampler.n_startup_trials
    if startup is None:
        startup = default_startup_trials(spec.max_trials)
    match spec.sampler.type:
        case "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
        case "random":
            return optuna.samplers.RandomSampler(seed=seed)
        case "cmaes":
            # Categorical parameters fall back to random sampling, which the docs say; no warning per trial.
            return optuna.samplers.CmaEsSampler(
                seed=seed, n_startup_trials=startup, warn_independent_sampling=False
            )
        case "grid":
            return AskTellGridSampler(grid_search_space(spec), seed=seed)
    raise ValueError(f"sampler.type {spec.sampler.type!r}: allowed values: tpe, random, cmaes, grid")


def build_pruner(spec: TuningJobSpec) -> BasePruner:
    """Steps are epochs, counted from 1: a trial reports its objective after each epoch."""
    settings = spec.pruner
    match settings.type:
        case "median":
            return optuna.pruners.MedianPruner(
                n_startup_trials=settings.n_startup_trials, n_warmup_steps=settings.n_warmup_steps
            )
        case "hyperband":
            return optuna.pruners.HyperbandPruner(
                min_resource=settings.min_resource,
                max_resource=spec.max_epochs(),
                reduction_factor=settings.reduction_factor,
            )
        case "none":
            return optuna.pruners.NopPruner()
    raise ValueError(f"pruner.type {settings.type!r}: allowed values: median, hyperband, none")
