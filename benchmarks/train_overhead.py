"""Trainer overhead: final-training throughput of Crucible's trainer vs a bare PyTorch loop.

Both train the same model (same architecture, init seed, data, batch size, optimizer) on digits.
The trainer is timed wall-clock through `fit` exactly as a run calls it (batches from its data
pipeline, held-out evaluation after every epoch included); the bare loop is the loop a user would
write over the same images held as one normalized tensor.
Rounds alternate the two so drift on a shared machine hits both alike. Target: ratio >= 0.9.

    python benchmarks/train_overhead.py [--architecture mobilenet_v3_small] [--epochs 3] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from crucible.api.trainingrun import TrainingRunSpec
from crucible.resources import available_cpus
from crucible.trainer.data import ImageData, curate, load_dataset, split
from crucible.trainer.engine import Precision, fit, make_optimizer, seed_everything
from crucible.trainer.models import build_model
from crucible.trainer.pipeline import Normalization, Pipeline


def bare_loop(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: TrainingRunSpec, epochs: int
) -> float:
    optimizer = make_optimizer(model, spec.hyperparameters)
    loss_fn = nn.CrossEntropyLoss()
    batch_size = spec.hyperparameters.batch_size
    started = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y))
        for start in range(0, len(y), batch_size):
            index = order[start : start + batch_size]
            loss = loss_fn(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return len(y) * epochs / (time.perf_counter() - started)


def trainer_fit(
    model: nn.Module,
    train: ImageData,
    test: ImageData,
    norm: Normalization,
    pipeline: Pipeline,
    spec: TrainingRunSpec,
    epochs: int,
) -> float:
    precision = Precision.for_device(torch.device("cpu"))
    seed_everything(spec.seed)
    started = time.perf_counter()
    feed = pipeline.train_feed(train, norm, spec.hyperparameters.batch_size, spec.seed)
    val = pipeline.eval_feed(test, norm, persistent=True)
    fit(model, feed, spec.hyperparameters, epochs, precision, val=val, num_classes=10)
    return len(train) * epochs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="mobilenet_v3_small")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    torch.set_num_threads(available_cpus())
    torch.use_deterministic_algorithms(True, warn_only=True)
    spec = TrainingRunSpec.model_validate(
        {"model": {"architecture": args.architecture}, "dataset": {"imageSize": args.image_size}}
    )
    data = curate(load_dataset(spec.dataset, spec.seed), spec.dataset, spec.seed)
    train, test = split(data, spec.dataset.test_fraction, spec.seed)
    pipeline = Pipeline(args.image_size, "stretch", None, torch.device("cpu"))
    norm = pipeline.normalization(train, spec.seed)
    x, y = (torch.cat(parts) for parts in zip(*pipeline.eval_feed(train, norm), strict=True))

    def fresh() -> nn.Module:
        seed_everything(spec.seed)
        return build_model(spec.model.architecture, len(data.classes), spec.model.dropout)

    print(f"{args.architecture} {args.image_size}x{args.image_size}, {len(y)} images, batch "
          f"{spec.hyperparameters.batch_size}, {args.epochs} epochs x {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    bare_loop(fresh(), x, y, spec, 1)  # warm-up: first-call allocations and kernel selection
    bare, ours, ratios = [], [], []
    for round_index in range(args.rounds):
        # The order alternates too: whichever runs second in a round is not always the trainer.
        if round_index % 2:
            ours.append(trainer_fit(fresh(), train, test, norm, pipeline, spec, args.epochs))
            bare.append(bare_loop(fresh(), x, y, spec, args.epochs))
        else:
            bare.append(bare_loop(fresh(), x, y, spec, args.epochs))
            ours.append(trainer_fit(fresh(), train, test, norm, pipeline, spec, args.epochs))
        ratios.append(ours[-1] / bare[-1])
        print(
            f"  round {round_index + 1}: bare {bare[-1]:8.1f} img/s   trainer {ours[-1]:8.1f} img/s"
            f"   ratio {ratios[-1]:.3f}"
        )
    print(f"bare PyTorch loop     {statistics.median(bare):8.1f} images/s (median)")
    ours_median = statistics.median(ours)
    print(f"crucible trainer      {ours_median:8.1f} images/s (median, held-out eval each epoch included)")
    # A round's two runs see the same machine: the median of the rounds' ratios discounts drift.
    print(f"ratio trainer / bare  {statistics.median(ratios):8.3f}   (median of the rounds; target >= 0.9)")


if __name__ == "__main__":
    main()
