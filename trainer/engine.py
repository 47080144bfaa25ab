"""The math of training: seeding, batching, augmentation, one epoch, evaluation.

Data lives on the device as whole tensors and is batched by index, which avoids DataLoader
overhead for the in-memory datasets the trainer works with.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from crucible.api.trainingrun import AugmentationSpec, HyperparametersSpec
from crucible.trainer import metrics


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


def augment(images: torch.Tensor, spec: AugmentationSpec, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crop (pad, shift) and horizontal flip, done on the whole batch at once."""
    if spec.random_crop and spec.crop_padding > 0:
        pad = spec.crop_padding
        n, _, h, w = images.shape
        padded = nn.functional.pad(images, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(images.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(images.device)
        rows = (dy.view(n, 1) + torch.arange(h, device=images.device)).view(n, 1, h, 1)
        cols = (dx.view(n, 1) + torch.arange(w, device=images.device)).view(n, 1, 1, w)
        batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
        channel = torch.arange(images.shape[1], device=images.device).view(1, -1, 1, 1)
        images = padded[batch, channel, rows, cols]
    if spec.horizontal_flip:
        flip = (torch.rand(images.shape[0], generator=generator) < 0.5).to(images.device)
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    return images


def batches(
    count: int, batch_size: int, generator: torch.Generator, shuffle: bool = True
) -> Iterator[torch.Tensor]:
    order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
    # Drop a last batch of one image: BatchNorm cannot train on it.
    for start in range(0, count, batch_size):
        index = order[start : start + batch_size]
        if len(index) > 1 or count == 1:
            yield index


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
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=hp.learning_rate, total_steps=total, pct_start=0.25
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
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    loss_fn: nn.Module,
    batch_size: int,
    generator: torch.Generator,
    precision: Precision,
    augmentation: AugmentationSpec | None = None,
    check_gradients: bool = False,
) -> EpochStats:
    """One pass over (images, labels), already normalized and on the device."""
    model.train()
    started = time.perf_counter()
    total_loss = torch.zeros((), device=images.device)
    correct = torch.zeros((), device=images.device, dtype=torch.long)
    seen = 0
    grads_finite = True
    for index in batches(len(labels), batch_size, generator):
        index = index.to(images.device)
        x, y = images[index], labels[index]
        if augmentation is not None:
            x = augment(x, augmentation, generator)
        with precision.autocast():
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        if check_gradients:
            loss.backward()
            grads_finite &= all_gradients_finite(model)
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
    return EpochStats(total_loss.item() / seen, correct.item() / seen, seen, seconds, grads_finite)


def all_gradients_finite(model: nn.Module) -> bool:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, precision: Precision, batch_size: int = 512
) -> torch.Tensor:
    """Logits for every image, in eval mode."""
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        with precision.autocast():
            outputs.append(model(images[start : start + batch_size]).float())
    return torch.cat(outputs) if outputs else torch.zeros(0)


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    macro_f1: float
    predictions: list[int] = field(repr=False, default_factory=list)
    labels: list[int] = field(repr=False, default_factory=list)
    probabilities: np.ndarray | None = field(repr=False, default=None)
    num_classes: int = 0

    def score(self, metric: str) -> float:
        """balancedAccuracy, macroF1 or accuracy (see crucible.trainer.metrics)."""
        return metrics.score(metric, self.labels, self.predictions, self.num_classes)

    def report(self) -> metrics.Report:
        return metrics.report(self.labels, self.predictions, self.num_classes, self.probabilities)


def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, precision: Precision, num_classes: int
) -> Evaluation:
    logits = predict(model, images, precision)
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


# Returns True to stop training after this epoch (early stopping); None or False trains on.
EpochCallback = Callable[[int, EpochStats, "Evaluation | None"], "bool | None"]


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict]
    train_seconds: float
    images_seen: int
    # Every step's loss and (when checked) gradients were finite: the finalTraining check.
    finite: bool = True


def fit(
    model: nn.Module,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    hp: HyperparametersSpec,
    epochs: int,
    generator: torch.Generator,
    precision: Precision,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    num_classes: int = 0,
    on_epoch: EpochCallback | None = None,
    check_gradients: bool = False,
) -> FitResult:
    """Train for `epochs`, optionally evaluating on `val` after each epoch. With `check_gradients`,
    gradients are checked for non-finite values at every step (loss-scaled fp16 skips such steps by
    design, so it is checked only without a scaler)."""
    optimizer = make_optimizer(model, hp)
    steps_per_epoch = sum(1 for _ in batches(len(train_y), hp.batch_size, torch.Generator(), shuffle=False))
    scheduler = make_scheduler(optimizer, hp, epochs, steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)
    augmentation = (
        hp.augmentation if (hp.augmentation.random_crop or hp.augmentation.horizontal_flip) else None
    )
    history, seconds, seen, finite = [], 0.0, 0, True
    for epoch in range(epochs):
        stats = train_one_epoch(
            model,
            train_x,
            train_y,
            optimizer,
            scheduler,
            loss_fn,
            hp.batch_size,
            generator,
            precision,
            augmentation,
            check_gradients=check_gradients and precision.scaler is None,
        )
        finite &= math.isfinite(stats.loss) and stats.grads_finite
        seconds += stats.seconds
        seen += stats.images
        evaluation = evaluate(model, *val, precision, num_classes) if val is not None else None
        entry = {"epoch": epoch + 1, "trainLoss": stats.loss, "trainAccuracy": stats.accuracy}
        if evaluation is not None:
            entry.update(valLoss=evaluation.loss, valAccuracy=evaluation.accuracy)
        history.append(entry)
        if on_epoch is not None and on_epoch(epoch, stats, evaluation):
            break
    return FitResult(model, history, seconds, seen, finite)
