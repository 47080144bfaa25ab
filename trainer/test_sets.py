"""spec.evaluation.testSets: extra labelled folders the exported model is evaluated on, reported apart
from the held-out split and never used for selection."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from crucible.api.trainingrun import DatasetSpec, TestSetSpec, TrainingRunSpec
from crucible.trainer import metrics
from crucible.trainer.data import Normalization, load_dataset, select_classes
from crucible.trainer.engine import Precision, evaluate


@dataclass
class TestSetResult:
    spec: TestSetSpec
    report: metrics.Report
    images: int
    # Images in class folders the model does not know (not scored).
    unknown: int


def evaluate_test_sets(
    run: TrainingRunSpec,
    model: nn.Module,
    classes: list[str],
    norm: Normalization,
    device: torch.device,
    precision: Precision,
) -> list[TestSetResult]:
    results = []
    for test_set in run.evaluation.test_sets:
        source = DatasetSpec(source="imageFolder", uri=test_set.uri, image_size=run.dataset.image_size)
        raw = load_dataset(source, run.dataset.split_seed)
        data = select_classes(raw, classes)  # relabelled in the model's class order
        evaluation = evaluate(
            model, norm.apply(data.images).to(device), data.labels.to(device), precision, len(classes)
        )
        results.append(TestSetResult(test_set, evaluation.report(), len(data), len(raw) - len(data)))
    return results
