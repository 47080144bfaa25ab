"""The math of training: seeding, one epoch, evaluation, fitting with checkpoints.

Batches come from a `Feed` (pipeline.py): normalized, augmented, already on the device.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from crucible.api.trainingrun import HyperparametersSpec
from crucible.trainer import metrics
from crucible.trainer.early_stopping import EarlyStopping
from crucible.trainer.pipeline import Feed


def seed_everything(seed: int) -> torch.Generator:
    """Seed every source of randomness; returns the generator that orders batches."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def pick_device(requested: str = "auto") -> torch.device:
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device: {requested!r} is not allowed; allowed values: auto, cpu, cuda")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device: cuda was asked for but no CUDA device is available")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


@dataclass
class Precision:
    """Mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling); fp32 on CPU."""

    device: torch.device
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def for_device(cls, device: torch.device) -> Precision:
        if device.type != "cuda":
            return cls(device)
        if torch.cuda.is_bf16_supported():
            return cls(device, torch.bfloat16)
        return cls(device, torch.float16, torch.amp.GradScaler("cuda"))

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()


def make_optimizer(model: nn.Module, hp: HyperparametersSpec) -> torch.optim.Optimizer:
    params = model.parameters()
    if hp.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=hp.learning_rate, momentum=hp.momentum, weight_decay=hp.weight_decay, nesterov=True
        )
    if hp.optimizer == "adam":
        return torch.optim.Adam(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    return torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, hp: HyperparametersSpec, epochs: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-step schedule, so short runs (cross-validation folds) get the same shape as long ones."""
    total = max(1, epochs * steps_per_epoch)
    if hp.scheduler == "onecycle":
        # The warm-up must span more than one step (OneCycleLR divides by its length): a quarter of
        # the steps, or 1.5 steps on the few-step fits of small splits and the debug gate.
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=hp.learning_rate, total_steps=total, pct_start=min(0.75, max(0.25, 1.5 / total))
        )
    if hp.scheduler == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total))
        )
    if hp.scheduler == "step":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.1 ** int(3 * s / total))
    return None


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    images: int
    seconds: float
    grads_finite: bool = True


def train_one_epoch(
    model: nn.Module,
    feed: Feed,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    loss_fn: nn.Module,
    precision: Precision,
    check_gradients: bool = False,
) -> EpochStats:
    """One pass over the feed's batches (normalized, on the device, augmented as the feed says)."""
    model.train()
    started = time.perf_counter()
    total_loss = torch.zeros((), device=feed.device)
    correct = torch.zeros((), device=feed.device, dtype=torch.long)
    seen = 0
    # Accumulated on the device like the loss: checking every step costs no host sync.
    grads_finite = torch.ones((), device=feed.device, dtype=torch.bool)
    for x, y in feed:
        with precision.autocast():
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        if check_gradients:
            loss.backward()
            grads_finite &= gradients_finite(model)
            optimizer.step()
        else:
            precision.step(loss, optimizer)
        if scheduler is not None:
            scheduler.step()
        # Accumulate on the device: no host sync per step.
        total_loss += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
    seconds = time.perf_counter() - started
    seen = max(seen, 1)
    return EpochStats(
        total_loss.item() / seen, correct.item() / seen, seen, seconds, bool(grads_finite.item())
    )


def gradients_finite(model: nn.Module) -> torch.Tensor:
    """Whether every gradient is finite, as a bool tensor on the model's device (no host sync)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.ones((), dtype=torch.bool)
    return torch.stack([torch.isfinite(g).all() for g in grads]).all()


def all_gradients_finite(model: nn.Module) -> bool:
    return bool(gradients_finite(model))


@torch.no_grad()
def predict(model: nn.Module, feed: Feed, precision: Precision) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of every image of the feed, in eval mode."""
    model.eval()
    outputs, labels = [], []
    for x, y in feed:
        with precision.autocast():
            outputs.append(model(x).float())
        labels.append(y)
    if not outputs:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return torch.cat(outputs), torch.cat(labels)


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    macro_f1: float
    predictions: list[int] = field(repr=False, default_factory=list)
    labels: list[int] = field(repr=False, default_factory=list)
    # Class probabilities [N, K] (float32), for top-k accuracy and calibration.
    probabilities: np.ndarray | None = field(repr=False, default=None)
    num_classes: int = 0

    def score(self, metric: str) -> float:
        """balancedAccuracy, macroF1 or accuracy (see crucible.trainer.metrics)."""
        return metrics.score(metric, self.labels, self.predictions, self.num_classes)

    def report(self) -> metrics.Report:
        return metrics.report(self.labels, self.predictions, self.num_classes, self.probabilities)


def evaluate(model: nn.Module, feed: Feed, precision: Precision, num_classes: int) -> Evaluation:
    logits, labels = predict(model, feed, precision)
    loss = nn.functional.cross_entropy(logits, labels).item() if len(labels) else float("nan")
    predicted = logits.argmax(1).tolist()
    truth = labels.tolist()
    probabilities = torch.softmax(logits, dim=1).cpu().numpy() if len(labels) else None
    return Evaluation(
        loss,
        metrics.accuracy(truth, predicted),
        metrics.macro_f1(truth, predicted, num_classes),
        predicted,
        truth,
        probabilities,
        num_classes,
    )


EpochCallback = Callable[[int, EpochStats, "Evaluation | None"], None]


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict]
    train_seconds: float
    images_seen: int
    # Every step's loss and (when checked) gradients were finite: the finalTraining check.
    finite: bool = True


def rng_state() -> dict:
    """Every global random state, in types `torch.load(weights_only=True)` reads back."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(
    model: nn.Module,
    train: Feed,
    hp: HyperparametersSpec,
    epochs: int,
    precision: Precision,
    val: Feed | None = None,
    num_classes: int = 0,
    on_epoch: EpochCallback | None = None,
    resume: dict | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
    check_gradients: bool = False,
    stopper: EarlyStopping | None = None,
) -> FitResult:
    """Train for `epochs`, optionally evaluating on `val` after each epoch.

    With `check_gradients`, gradients are checked for non-finite values at every step (loss-scaled
    fp16 skips such steps by design, so it is checked only without a scaler); the fit stops at the
    first epoch with a non-finite loss or gradient, and `FitResult.finite` says so. `stopper` (early
    stopping on `val`) may end it sooner; it keeps the best epoch's weights, restored by the caller.

    `on_checkpoint` gets the whole training state after every epoch, early stopping's included; given
    back as `resume`, the run continues after that epoch exactly as if it had never stopped."""
    optimizer = make_optimizer(model, hp)
    scheduler = make_scheduler(optimizer, hp, epochs, len(train))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)
    history, seconds, seen, start, finite, stopped = [], 0.0, 0, 0, True, False
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(resume["scheduler"])
        if precision.scaler is not None and resume.get("scaler"):
            precision.scaler.load_state_dict(resume["scaler"])
        history, seconds, seen, start = resume["history"], resume["seconds"], resume["seen"], resume["epoch"]
        set_rng_state(resume["rng"])
        finite, stopped = resume.get("finite", True), resume.get("stopped", False)
        if stopper is not None and resume.get("stopper") is not None:
            stopper.load_state_dict(resume["stopper"])
    for epoch in range(start, epochs):
        if stopped:
            break  # stopped early (or diverged) before a restart
        train.set_epoch(epoch)
        stats = train_one_epoch(
            model,
            train,
            optimizer,
            scheduler,
            loss_fn,
            precision,
            check_gradients=check_gradients and precision.scaler is None,
        )
        finite &= math.isfinite(stats.loss) and stats.grads_finite
        seconds += stats.seconds
        seen += stats.images
        evaluation = evaluate(model, val, precision, num_classes) if val is not None else None
        entry = {"epoch": epoch + 1, "trainLoss": stats.loss, "trainAccuracy": stats.accuracy}
        if evaluation is not None:
            entry.update(valLoss=evaluation.loss, valAccuracy=evaluation.accuracy)
        history.append(entry)
        # Decided before the checkpoint, so a restart after it knows the fit is over.
        stopped = not finite or (
            stopper is not None and evaluation is not None and stopper.update(epoch + 1, evaluation)
        )
        if on_checkpoint is not None:
            on_checkpoint(
                {
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": precision.scaler.state_dict() if precision.scaler is not None else None,
                    "history": history,
                    "seconds": seconds,
                    "seen": seen,
                    "rng": rng_state(),
                    "finite": finite,
                    "stopped": stopped,
                    "stopper": stopper.state_dict() if stopper is not None else None,
                }
            )
        if on_epoch is not None:
            on_epoch(epoch, stats, evaluation)
    return FitResult(model, history, seconds, seen, finite)
