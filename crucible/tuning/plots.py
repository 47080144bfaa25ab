"""PNG plots of a search, drawn with matplotlib from the study's trials:

- optimization_history.png: each trial's value and the best so far (pruned and failed trials
  marked), and the per-epoch values that drove pruning.
- param_importances.png: how much each parameter explains the objective (fANOVA), or, when that
  cannot be computed yet (too few complete trials), a figure saying why.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from crucible.api.tuningjob import TuningJobSpec
from crucible.tuning.summary import BASELINE_ATTR

HISTORY_FILE = "optimization_history.png"
IMPORTANCES_FILE = "param_importances.png"
MIN_TRIALS_FOR_IMPORTANCE = 4


def param_importances(study: optuna.Study) -> tuple[dict[str, float] | None, str]:
    """Normalized importances by parameter, or None and the reason they cannot be computed."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return None, f"needs {MIN_TRIALS_FOR_IMPORTANCE} complete trials, the study has {len(complete)}"
    if len({t.value for t in complete}) < 2:
        return None, "every complete trial has the same value"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError, ZeroDivisionError) as error:
        return None, f"could not be computed: {error}"
    if not importances or not all(math.isfinite(v) for v in importances.values()):
        return None, "could not be computed from these trials"
    return {name: round(float(value), 4) for name, value in importances.items()}, ""


def write_plots(study: optuna.Study, spec: TuningJobSpec, output_dir: Path) -> dict[str, Any]:
    """Write both PNGs; returns their paths and the importances (None, with the reason, if none)."""
    import matplotlib

    matplotlib.use("Agg")
    trials = study.get_trials(deepcopy=False)
    history = output_dir / HISTORY_FILE
    _history_figure(trials, spec, history)
    importances, why_not = param_importances(study)
    importance_path = output_dir / IMPORTANCES_FILE
    _importance_figure(importances, why_not, spec, importance_path)
    return {
        "optimizationHistory": str(history),
        "paramImportances": str(importance_path),
        "importances": importances,
        **({"importancesNote": why_not} if why_not else {}),
    }


def best_so_far(trials: list[FrozenTrial], maximize: bool) -> list[tuple[int, float]]:
    """(trial number, best complete value up to it), for the history's step line."""
    points, best = [], None
    for trial in sorted(trials, key=lambda t: t.number):
        value = trial.value if trial.state == TrialState.COMPLETE else None
        if value is not None and math.isfinite(value) and (best is None or (value > best) == maximize):
            best = value
        if best is not None:
            points.append((trial.number, best))
    return points


def _history_figure(trials: list[FrozenTrial], spec: TuningJobSpec, path: Path) -> None:
    import matplotlib.pyplot as plt

    metric = spec.objective.metric
    maximize = spec.objective.resolved_direction() == "maximize"
    fig, (values_axis, curves_axis) = plt.subplots(1, 2, figsize=(13, 4.8))

    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    values_axis.scatter(
        [t.number for t in complete],
        [t.value for t in complete],
        color="tab:blue",
        label="complete",
        zorder=3,
    )
    values_axis.scatter(
        [t.number for t in pruned],
        [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
        facecolors="none",
        edgecolors="tab:orange",
        label="pruned (last epoch's value)",
        zorder=3,
    )
    best = best_so_far(trials, maximize)
    if best:
        values_axis.step(*zip(*best, strict=True), where="post", color="tab:green", label="best so far")
    baseline = next((t for t in complete if t.user_attrs.get(BASELINE_ATTR)), None)
    if baseline is not None:
        values_axis.axhline(baseline.value, color="gray", linestyle=":", label="template (trial 0)")
    for trial in failed:
        values_axis.axvline(trial.number, color="tab:red", alpha=0.25, linewidth=4)
    if failed:
        values_axis.plot([], [], color="tab:red", alpha=0.4, linewidth=4, label="failed")
    values_axis.set_xlabel("trial")
    values_axis.set_ylabel(metric)
    values_axis.set_title(f"Optimization history ({'maximize' if maximize else 'minimize'} {metric})")
    if trials:
        values_axis.legend(fontsize=8)

    for trial in trials:
        if not trial.intermediate_values:
            continue
        steps = sorted(trial.intermediate_values)
        style = "--" if trial.state == TrialState.PRUNED else "-"
        colour = {TrialState.PRUNED: "tab:orange", TrialState.FAIL: "tab:red"}.get(trial.state, "tab:blue")
        curves_axis.plot(
            steps, [trial.intermediate_values[s] for s in steps], style, color=colour, alpha=0.6, marker="."
        )
    curves_axis.set_xlabel("epoch")
    curves_axis.set_ylabel(f"held-out {metric}")
    curves_axis.set_title("Per-epoch values (dashed: pruned)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _importance_figure(
    importances: dict[str, float] | None, why_not: str, spec: TuningJobSpec, path: Path
) -> None:
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 0.6 * max(len(spec.search_space), 3) + 1.2))
    if importances:
        names = list(importances)[::-1]
        axis.barh(names, [importances[n] for n in names], color="tab:blue")
        for y, name in enumerate(names):
            axis.text(importances[name], y, f" {importances[name]:.2f}", va="center", fontsize=8)
        axis.set_xlim(0, 1.1)
        axis.set_xlabel(f"importance for {spec.objective.metric} (fANOVA)")
    else:
        axis.axis("off")
        axis.text(0.5, 0.5, f"Parameter importances not available:\n{why_not}", ha="center", va="center")
    axis.set_title("Parameter importances")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
