"""The gates: each check measures a value and holds it to a threshold.

A gate passes when all its checks pass. The first failed check of the first failed gate becomes
the run's reason, so a person reads exactly what failed, by how much, and against what bound.
Thresholds are relative to the task where they can be: the overfit bound to ln K, the cross-validation
score to trivial baselines on the same folds, the held-out score to the CV estimate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from crucible.api.result import GateReport
from crucible.api.trainingrun import (
    BaselineGateSpec,
    CrossValidationGateSpec,
    HeldOutGateSpec,
    OverfittingGateSpec,
    TrainingRunSpec,
)
from crucible.trainer import data_checks
from crucible.trainer.checks import failure_reason, gate, measure
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
from crucible.trainer.folds import Fold
from crucible.trainer.models import build_model
from crucible.trainer.pipeline import Normalization, Pipeline, sample
from crucible.trainer.survey import Survey

__all__ = ["TrainingError", "failure_reason", "gate", "measure"]


class TrainingError(RuntimeError):
    """Training could not proceed (for example a dataset too small to split)."""


# --- debug gate -----------------------------------------------------------------------------


def data_checks_of(
    run: TrainingRunSpec, train: ImageData, held_out: ImageData, surveys: tuple[Survey, Survey]
) -> dict:
    """Checks of the data before any training: each can fail on real data and names what is wrong.
    Duplicates compare the sources' content digests (no decoding); constant images use the pixel
    spreads of the splits' surveys (train, held-out)."""
    spec = run.gates.debug
    counts = train.class_counts()
    checks = {
        "labelSet": data_checks.label_set(counts, train.classes),
        "classBalance": data_checks.class_balance(counts, train.classes, spec.min_class_balance),
        "duplicates": data_checks.duplicates(
            train.digests(), held_out.digests(), held_out.image_names(), spec.max_duplicates
        ),
        "constantImages": data_checks.constant_images(
            np.concatenate([survey.spread for survey in surveys]),
            [*train.image_names(), *held_out.image_names()],
            spec.max_constant_images,
        ),
    }
    if run.gates.cross_validation.enabled:
        checks["smallestClass"] = data_checks.smallest_class(
            counts, train.classes, run.gates.cross_validation.folds
        )
    return checks


def overfit_bound(run: TrainingRunSpec, num_classes: int) -> float:
    """An absolute overfitLossBound when set, else overfitLossFraction x ln K (a uniform guess's loss)."""
    spec = run.gates.debug
    if spec.overfit_loss_bound is not None:
        return spec.overfit_loss_bound
    return spec.overfit_loss_fraction * math.log(max(num_classes, 2))


def _overfit_one_batch(
    run: TrainingRunSpec, num_classes: int, x: torch.Tensor, y: torch.Tensor, precision: Precision
) -> tuple[float, bool]:
    """`overfitSteps` optimizer steps on one fixed batch from a fresh seeded model, then the batch's loss
    in eval mode: dropout off, BatchNorm on its running statistics, as the exported model predicts."""
    seed_everything(run.seed)
    model = build_model(run.model.architecture, num_classes, run.model.dropout, run.model.pretrained_weights)
    model = model.to(x.device).train()
    optimizer = make_optimizer(model, run.hyperparameters)
    loss_fn = nn.CrossEntropyLoss()
    finite = True
    for _ in range(run.gates.debug.overfit_steps):
        with precision.autocast():
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        finite &= all_gradients_finite(model)
        optimizer.step()
    model.eval()
    with torch.no_grad(), precision.autocast():
        return loss_fn(model(x).float(), y).item(), finite


def weights_sha256(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _short_fit(
    run: TrainingRunSpec,
    num_classes: int,
    batch: ImageData,
    pipeline: Pipeline,
    norm: Normalization,
    precision: Precision,
) -> str:
    """The sha256 of the weights after one epoch of the real fit() over two batches read through the
    real pipeline, with shuffling, augmentation (the run's, with crop and flip forced on so their
    randomness is exercised) and the scheduler."""
    hp = run.hyperparameters
    augmentation = hp.augmentation.model_copy(update={"random_crop": True, "horizontal_flip": True})
    hp = hp.model_copy(update={"batch_size": max(2, -(-len(batch) // 2)), "augmentation": augmentation})
    feeding = dataclasses.replace(pipeline, augmentation=augmentation)
    seed_everything(run.seed)
    model = build_model(run.model.architecture, num_classes, run.model.dropout, run.model.pretrained_weights)
    fit(model.to(pipeline.device), feeding.train_feed(batch, norm, hp.batch_size, run.seed), hp, 1, precision)
    return weights_sha256(model)


def debug_gate(
    run: TrainingRunSpec,
    train: ImageData,
    held_out: ImageData,
    surveys: tuple[Survey, Survey],
    fit_part: ImageData,
    pipeline: Pipeline,
    norm: Normalization,
    precision: Precision,
) -> GateReport:
    """Data checks on the splits, then overfit-one-batch, reproducibility and finite gradients on a
    batch of `fit_part` (the split the final model trains on), read through the pipeline."""
    checks = data_checks_of(run, train, held_out, surveys)
    if not all(c.passed for c in checks.values()):
        return gate(checks)  # No point training on broken data.
    spec = run.gates.debug
    batch = sample(fit_part, min(spec.overfit_batch_size, len(fit_part)), run.seed)
    size = len(batch)
    x, y = next(iter(pipeline.eval_feed(batch, norm, batch_size=size)))
    num_classes = len(train.classes)
    loss, grads_finite = _overfit_one_batch(run, num_classes, x, y, precision)
    bound = overfit_bound(run, num_classes)
    checks["overfitOneBatch"] = measure(
        loss,
        "<",
        bound,
        f"loss {loss:.3g} on one batch of {size} images after {spec.overfit_steps} steps, measured in eval "
        f"mode, is not below {bound:.3g} ({spec.overfit_loss_fraction:g} x ln {num_classes})"
        if spec.overfit_loss_bound is None
        else f"loss {loss:.3g} on one batch after {spec.overfit_steps} steps (eval mode) is not below "
        f"{bound:g}",
    )
    first, second = (_short_fit(run, num_classes, batch, pipeline, norm, precision) for _ in range(2))
    checks["reproducibility"] = measure(
        0 if first == second else 1,
        "<=",
        0,
        f"two seeded fits of two batches gave different weights (sha256 {first[:12]} vs {second[:12]}); "
        "a non-deterministic operation is in the model or the pipeline",
    )
    checks["finiteGradients"] = measure(
        0 if grads_finite else 1, "<=", 0, "a gradient was NaN or infinite while overfitting one batch"
    )
    return gate(checks)


# --- cross-validation gate --------------------------------------------------------------------


def cross_validation_gate(
    run: TrainingRunSpec,
    train: ImageData,
    folds: list[Fold],
    pipeline: Pipeline,
    precision: Precision,
    on_fold: Callable[[int, float], None] | None = None,
    on_epoch: Callable[[int, int, EpochStats], None] | None = None,
    resume: dict | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
) -> GateReport:
    """The given stratified folds of the training split, each normalized from its own training part.

    `on_checkpoint` gets {"scores": finished folds' scores, "fit": the running fold's training
    state or None} after every epoch and every finished fold; given back as `resume`, finished
    folds are not trained again and the running one continues after its last epoch."""
    spec: CrossValidationGateSpec = run.gates.cross_validation
    scores: list[float] = list(resume["scores"]) if resume else []
    hp = run.hyperparameters
    for fold, (fit_idx, val_idx) in enumerate(folds):
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
    checks = {
        "mean": measure(mean, ">=", spec.min_mean, f"cv {spec.metric} {mean:.3g} is below {spec.min_mean:g}"),
        "std": measure(
            std,
            "<=",
            spec.max_std,
            f"cv {spec.metric} varies by {std:.3g} across folds (more than {spec.max_std:g})",
        ),
    }
    return gate(checks, mean=mean, std=std, folds=scores, metric=spec.metric)


# --- baseline gate ---------------------------------------------------------------------------


def required_lift(best: float, min_lift: float) -> float:
    """minLift, or half the headroom left above the best baseline when that is less: a score cannot
    exceed 1, so next to a baseline at 0.98 the network must reach 0.99, and next to a perfect baseline
    it must only match it."""
    return max(0.0, min(min_lift, (1.0 - best) / 2))


def baseline_gate(
    cv_mean: float, metric: str, baseline_means: dict[str, float], spec: BaselineGateSpec
) -> GateReport:
    """The network's CV mean must exceed the best baseline's CV mean (same folds) by minLift."""
    best_name = max(baseline_means, key=lambda name: baseline_means[name])
    best = baseline_means[best_name]
    lift = cv_mean - best
    needed = required_lift(best, spec.min_lift)
    check = measure(
        lift,
        ">=",
        needed,
        f"cv {metric} {cv_mean:.3g} is not {needed:.3g} above the {best_name} baseline {best:.3g}",
    )
    return gate({"lift": check}, metric=metric, baselines=baseline_means, lift=lift)


# --- after the final training ----------------------------------------------------------------


def final_training_gate(finite: bool) -> GateReport:
    """Every step of the final fit had a finite loss and finite gradients: NaN logits would otherwise
    predict class 0 everywhere and pass as a model."""
    return gate(
        {
            "finiteLoss": measure(
                0 if finite else 1, "<=", 0, "the loss or a gradient became NaN or infinite in the final fit"
            )
        }
    )


def held_out_gate(
    score: float,
    metric: str,
    cv_mean: float | None,
    best_baseline: tuple[str, float] | None,
    spec: HeldOutGateSpec,
) -> GateReport:
    """The exported model's held-out score against its CV estimate and the best baseline's held-out score."""
    checks = {}
    if cv_mean is not None:
        floor = cv_mean - spec.tolerance
        checks["vsCrossValidation"] = measure(
            score,
            ">=",
            floor,
            f"held-out {metric} {score:.3g} of the exported model is below the cv mean {cv_mean:.3g} "
            f"minus {spec.tolerance:g}",
        )
    if best_baseline is not None:
        name, value = best_baseline
        # Above the baseline; next to a perfect one (an easy task), matching it is all that is possible.
        checks["vsBaseline"] = measure(
            score,
            ">" if value < 1.0 else ">=",
            value,
            f"held-out {metric} {score:.3g} is not above the {name} baseline {value:.3g}",
        )
    return gate(checks, metric=metric)


def test_sets_gate(scores: dict[str, float], minimums: dict[str, float], metric: str) -> GateReport:
    """Each test set with a minScore: the exported model's score on it must reach that."""
    checks = {
        name: measure(
            scores[name],
            ">=",
            minimum,
            f"{metric} {scores[name]:.3g} on test set '{name}' is below its minScore {minimum:g}",
        )
        for name, minimum in minimums.items()
    }
    return gate(checks, metric=metric)


def overfitting_gate(
    train_accuracy: float, held_out_accuracy: float, spec: OverfittingGateSpec
) -> GateReport:
    gap = train_accuracy - held_out_accuracy
    return gate({"gap": measure(gap, "<=", spec.max_gap)})
