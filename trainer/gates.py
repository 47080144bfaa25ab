"""The gates: each check measures a value and holds it to a threshold.

A gate passes when all its checks pass. The first failed check of the first failed gate becomes
the run's reason, so a person reads exactly what failed, by how much, and against what bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from crucible.api.result import Check, GateReport
from crucible.api.trainingrun import (
    CrossValidationGateSpec,
    DebugGateSpec,
    OverfittingGateSpec,
    TrainingRunSpec,
)
from crucible.trainer.data import ImageData
from crucible.trainer.engine import (
    EpochStats,
    Precision,
    all_gradients_finite,
    evaluate,
    fit,
    make_optimizer,
    seed_everything,
)
from crucible.trainer.models import build_model
from crucible.trainer.pipeline import Measured, Normalization, Pipeline, measure_normalized, sample

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda value, bound: value <= bound,
    "<": lambda value, bound: value < bound,
    ">=": lambda value, bound: value >= bound,
}


class TrainingError(RuntimeError):
    """Training could not proceed (for example more folds than a class has images)."""


def measure(value: float | None, op: str, threshold: float) -> Check:
    """A check; a missing or non-finite value never passes."""
    finite = value is not None and math.isfinite(value)
    passed = finite and COMPARISONS[op](value, threshold)
    return Check(value=value if finite else None, threshold=threshold, passed=passed, op=op)


def gate(checks: dict[str, Check], **extra) -> GateReport:
    return GateReport(passed=all(c.passed for c in checks.values()), checks=checks, **extra)


def failure_reason(name: str, report: GateReport) -> str:
    for check_name, check in report.checks.items():
        if not check.passed:
            value = "not finite" if check.value is None else f"{check.value:.6g}"
            op = getattr(check, "op", "vs")
            return f"{name} gate failed: {check_name} = {value} (must be {op} {check.threshold:g})"
    return f"{name} gate failed"


# --- debug gate -----------------------------------------------------------------------------

# The data checks look at this many training images (a seeded sample, decoded like any batch).
CHECKED_SAMPLE = 512


def data_checks(
    train: ImageData, measured: Measured, spec: DebugGateSpec, tolerance: float
) -> dict[str, Check]:
    """Data checks on the training split: finite values, label set, balance, normalized statistics
    (measured on a sample of normalized batches)."""
    counts = train.class_counts()
    missing = sum(1 for count in counts if count == 0)
    present = [count for count in counts if count > 0]
    balance = min(present) / max(present) if present else 0.0
    channel_mean = max(abs(v) for v in measured.channel_mean)
    channel_std = max(abs(v - 1) for v in measured.channel_std)
    return {
        "finiteValues": measure(measured.non_finite, "<=", 0),
        "labelSet": measure(missing, "<=", 0),
        "classBalance": measure(balance, ">=", spec.min_class_balance),
        "normalizedMean": measure(channel_mean, "<=", tolerance),
        "normalizedStd": measure(channel_std, "<=", tolerance),
    }


def _short_run(
    run: TrainingRunSpec, num_classes: int, x: torch.Tensor, y: torch.Tensor, steps: int, precision: Precision
) -> tuple[list[float], bool]:
    """`steps` optimizer steps on one fixed batch from a fresh seeded model: losses, grads finite."""
    seed_everything(run.seed)
    model = build_model(run.model.architecture, num_classes, run.model.dropout, run.model.pretrained_weights)
    model = model.to(x.device).train()
    optimizer = make_optimizer(model, run.hyperparameters)
    loss_fn = nn.CrossEntropyLoss()
    losses, finite = [], True
    for _ in range(steps):
        with precision.autocast():
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        finite &= all_gradients_finite(model)
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad(), precision.autocast():
        losses.append(loss_fn(model(x), y).item())
    return losses, finite


def debug_gate(
    run: TrainingRunSpec, train: ImageData, pipeline: Pipeline, norm: Normalization, precision: Precision
) -> GateReport:
    spec = run.gates.debug
    measured = measure_normalized(pipeline.eval_feed(sample(train, CHECKED_SAMPLE, run.seed + 1), norm))
    tolerance = (
        spec.pretrained_normalization_tolerance if norm.source != "data" else spec.normalization_tolerance
    )
    checks = data_checks(train, measured, spec, tolerance)
    if not all(c.passed for c in checks.values()):
        return gate(checks)  # No point training on broken data.
    batch = sample(train, min(spec.overfit_batch_size, len(train)), run.seed)
    x, y = next(iter(pipeline.eval_feed(batch, norm, batch_size=len(batch))))
    num_classes = len(train.classes)
    losses, grads_finite = _short_run(run, num_classes, x, y, spec.overfit_steps, precision)
    first, second = (
        _short_run(run, num_classes, x, y, spec.reproducibility_steps, precision)[0] for _ in range(2)
    )
    difference = max(abs(a - b) for a, b in zip(first, second, strict=True))
    checks["overfitOneBatch"] = measure(losses[-1], "<", spec.overfit_loss_bound)
    checks["reproducibility"] = measure(difference, "<=", spec.reproducibility_tolerance)
    checks["finiteGradients"] = measure(0 if grads_finite else 1, "<=", 0)
    return gate(checks)


# --- cross-validation gate --------------------------------------------------------------------


def cross_validation_gate(
    run: TrainingRunSpec,
    train: ImageData,
    pipeline: Pipeline,
    precision: Precision,
    on_fold: Callable[[int, float], None] | None = None,
    on_epoch: Callable[[int, int, EpochStats], None] | None = None,
    resume: dict | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
) -> GateReport:
    """Stratified k-fold on the training split, each fold normalized from its own training part.

    `on_checkpoint` gets {"scores": finished folds' scores, "fit": the running fold's training
    state or None} after every epoch and every finished fold; given back as `resume`, finished
    folds are not trained again and the running one continues after its last epoch."""
    from sklearn.model_selection import StratifiedKFold

    spec: CrossValidationGateSpec = run.gates.cross_validation
    labels = train.labels.numpy()
    smallest = int(np.bincount(labels, minlength=len(train.classes)).min())
    if smallest < spec.folds:
        raise TrainingError(
            f"crossValidation: folds={spec.folds} but the smallest class has {smallest} training images; "
            "lower spec.gates.crossValidation.folds or add data"
        )
    splitter = StratifiedKFold(n_splits=spec.folds, shuffle=True, random_state=run.seed % 2**32)
    scores: list[float] = list(resume["scores"]) if resume else []
    hp = run.hyperparameters
    for fold, (fit_idx, val_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        if fold < len(scores):
            continue  # finished before a restart
        part, held = train.subset(fit_idx), train.subset(val_idx)
        norm = pipeline.normalization(part, run.seed + fold + 1)
        seed_everything(run.seed + fold + 1)
        model = build_model(
            run.model.architecture, len(train.classes), run.model.dropout, run.model.pretrained_weights
        ).to(pipeline.device)
        resume_fit = resume.get("fit") if resume and fold == len(resume["scores"]) else None
        fit(
            model,
            pipeline.train_feed(part, norm, hp.batch_size, run.seed + fold + 1),
            hp,
            spec.epochs,
            precision,
            on_epoch=(lambda epoch, stats, _, fold=fold: on_epoch(fold, epoch, stats)) if on_epoch else None,
            resume=resume_fit,
            on_checkpoint=(
                (lambda state: on_checkpoint({"scores": list(scores), "fit": state}))
                if on_checkpoint
                else None
            ),
        )
        score = evaluate(model, pipeline.eval_feed(held, norm), precision, len(train.classes)).score(
            spec.metric
        )
        scores.append(score)
        if on_checkpoint is not None:
            on_checkpoint({"scores": list(scores), "fit": None})
        if on_fold is not None:
            on_fold(fold, score)
    mean = float(np.mean(scores))
    std = float(np.std(scores))
    checks = {"mean": measure(mean, ">=", spec.min_mean), "std": measure(std, "<=", spec.max_std)}
    return gate(checks, mean=mean, std=std, folds=scores, metric=spec.metric)


# --- overfitting gate ------------------------------------------------------------------------


def overfitting_gate(
    train_accuracy: float, held_out_accuracy: float, spec: OverfittingGateSpec
) -> GateReport:
    gap = train_accuracy - held_out_accuracy
    return gate({"gap": measure(gap, "<=", spec.max_gap)})
