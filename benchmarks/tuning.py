"""TPE against random search: the best value each reaches per trial count, same budget and seeds.

Both searches tune the same template (a tiny CNN on digits) over the same space with the same
sampler seeds, no pruning and no baseline trial, so they differ only in how they pick values. Every
trial is a real trainer run through the same code `crucible tune` uses. Training is seeded, so the
objective is a deterministic function of the parameters. The two samplers take turns trial by trial
(a drifting machine load hits both alike); when the time limit is reached both stop at the same
trial count.

By default the benchmark runs on one core: a tiny CNN gains nothing from a second thread, and on a
shared machine two threads per trial wait on each other. The values do not depend on it.

    python benchmarks/tuning.py [--trials 20] [--seeds 3] [--metric loss] [--time-limit 300] [--cores 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from crucible.api.tuningjob import TuningJobSpec
from crucible.tuning.local import run_trial
from crucible.tuning.plots import best_so_far
from crucible.tuning.space import distributions
from crucible.tuning.study import open_study

SAMPLERS = ("tpe", "random")
TEMPLATE = {
    "seed": 7,
    "dataset": {"source": "digits", "imageSize": 8},
    "model": {"architecture": "tiny_cnn", "dropout": 0.1},
    "hyperparameters": {"epochs": 4, "batchSize": 64, "learningRate": 0.002},
    # The slow gates are off so the budget goes to the search; the overfitting gate still applies.
    "gates": {
        "debug": {"enabled": False},
        "crossValidation": {"enabled": False},
        "overfitting": {"maxGap": 0.1},
    },
}
SEARCH_SPACE = {
    "hyperparameters.learningRate": {"type": "float", "low": 0.0001, "high": 0.3, "log": True},
    "hyperparameters.weightDecay": {"type": "float", "low": 0.000001, "high": 0.1, "log": True},
    "hyperparameters.batchSize": {"type": "categorical", "choices": [16, 32, 64, 128]},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
}


def job_spec(sampler: str, seed: int, trials: int, metric: str) -> TuningJobSpec:
    return TuningJobSpec.model_validate(
        {
            "template": TEMPLATE,
            "searchSpace": SEARCH_SPACE,
            "objective": {"metric": metric},
            "sampler": {"type": sampler, "seed": seed},
            "pruner": {"type": "none"},
            "maxTrials": trials,
            "baselineTrial": False,
        }
    )


def best_per_count(study: optuna.Study, maximize: bool) -> list[float | None]:
    """Index i: the best value among the first i + 1 trials (None before any completes)."""
    best = dict(best_so_far(study.get_trials(deepcopy=False), maximize))
    return [best.get(number) for number in range(len(study.trials))]


def run_seed(seed: int, args: argparse.Namespace, deadline: float, workdir: Path) -> dict[str, list]:
    specs = {name: job_spec(name, seed, args.trials, args.metric) for name in SAMPLERS}
    studies = {
        name: open_study(spec, optuna.storages.InMemoryStorage(), f"{name}-{seed}")
        for name, spec in specs.items()
    }
    for number in range(args.trials):
        if time.monotonic() > deadline:
            print(f"  seed {seed}: time limit reached after {number} trials each")
            break
        for name, spec in specs.items():
            study = studies[name]
            trial = study.ask(fixed_distributions=distributions(spec))
            run_trial(study, trial, spec, f"{name}-{seed}", workdir / name / str(seed), device="cpu")
        line = "  ".join(f"{name} {_cell(studies[name].trials[-1].value)}" for name in SAMPLERS)
        print(f"  seed {seed} trial {number + 1:>2}: {line}", flush=True)
    maximize = specs["tpe"].objective.resolved_direction() == "maximize"
    return {name: best_per_count(study, maximize) for name, study in studies.items()}


def _cell(value: float | None) -> str:
    return "   —   " if value is None else f"{value:.4f}"


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if len(known) == len(values) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="Trials per search.")
    parser.add_argument("--seeds", type=int, default=3, help="Sampler seeds 0..N-1, each run by both.")
    parser.add_argument("--metric", default="loss", help="Objective: loss (held-out, minimized) or accuracy.")
    parser.add_argument("--time-limit", type=float, default=300, help="Seconds; then both stop alike.")
    parser.add_argument(
        "--cores", type=int, default=1, help="CPUs to train on (0: all this process may use)."
    )
    args = parser.parse_args()
    if args.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    started = time.monotonic()
    deadline = started + args.time_limit
    results: dict[int, dict[str, list]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for seed in range(args.seeds):
            if time.monotonic() > deadline:
                break
            results[seed] = run_seed(seed, args, deadline, Path(workdir))
    if not results:
        print("no trial ran within the time limit")
        return
    # Same budget for both: the trial count every search reached.
    counts = min(len(best) for seed in results.values() for best in seed.values())
    direction = job_spec("tpe", 0, args.trials, args.metric).objective.resolved_direction()
    print(
        f"\nBest held-out {args.metric} ({direction}) reached after N trials, mean over sampler seeds "
        f"{sorted(results)} ({time.monotonic() - started:.0f} s)"
    )
    header = f"{'trials':>6}  " + "  ".join(f"{name:>8}" for name in SAMPLERS)
    header += "  " + "  ".join(f"{name}/seed{s}" for s in results for name in SAMPLERS)
    print(header)
    for n in range(counts):
        means = [_mean([results[s][name][n] for s in results]) for name in SAMPLERS]
        row = f"{n + 1:>6}  " + "  ".join(f"{_cell(m):>8}" for m in means)
        row += "  " + "  ".join(f"{_cell(results[s][name][n]):>11}" for s in results for name in SAMPLERS)
        print(row)


if __name__ == "__main__":
    main()
