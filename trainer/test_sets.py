"""spec.evaluation.testSets: extra labelled folders the exported model is evaluated on, reported apart
from the held-out split and never used for selection. Each is read like the dataset: its files checked
once (unreadable ones up to dataset.maxBadFiles skipped), then decoded per batch through the run's
pipeline, with the eval transform and normalization the model was trained with."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from crucible.api.trainingrun import DatasetSpec, TestSetSpec, TrainingRunSpec
from crucible.resources import available_cpus
from crucible.trainer import metrics
from crucible.trainer.data import load_dataset, select_classes
from crucible.trainer.engine import Precision, evaluate
from crucible.trainer.pipeline import Normalization, Pipeline


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
    pipeline: Pipeline,
    norm: Normalization,
    precision: Precision,
) -> list[TestSetResult]:
    results = []
    for test_set in run.evaluation.test_sets:
        source = DatasetSpec(
            source="imageFolder",
            uri=test_set.uri,
            image_size=run.dataset.image_size,
            max_bad_files=run.dataset.max_bad_files,
        )
        raw = load_dataset(source, run.dataset.split_seed, available_cpus())
        data = select_classes(raw, classes)  # relabelled in the model's class order
        evaluation = evaluate(model, pipeline.eval_feed(data, norm), precision, len(classes))
        results.append(TestSetResult(test_set, evaluation.report(), len(data), len(raw) - len(data)))
    return results
