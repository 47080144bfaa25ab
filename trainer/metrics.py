"""Classification metrics from labels, predictions and (optionally) class probabilities.

Pure numpy, so the same figures come out for the network, the baselines and a comparison of two
runs. Scores that can be misleading on imbalanced data (accuracy) sit beside ones that cannot
(balanced accuracy: the mean per-class recall; macro F1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The scores a gate or a tuning objective can be held to.
SCORES = ("balancedAccuracy", "macroF1", "accuracy")
CALIBRATION_BINS = 15


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix


def accuracy(labels: Sequence[int], predictions: Sequence[int]) -> float:
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return float((labels == predictions).mean()) if len(labels) else 0.0


def balanced_accuracy(labels: Sequence[int], predictions: Sequence[int], num_classes: int) -> float:
    """Mean recall over the classes present in `labels`: a majority-class guess scores 1/K."""
    matrix = confusion_matrix(labels, predictions, num_classes)
    support = matrix.sum(axis=1)
    present = support > 0
    if not present.any():
        return 0.0
    return float((np.diag(matrix)[present] / support[present]).mean())


def per_class(labels: Sequence[int], predictions: Sequence[int], num_classes: int) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support of every class (0 where a ratio has no denominator)."""
    matrix = confusion_matrix(labels, predictions, num_classes)
    tp = np.diag(matrix).astype(float)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros(num_classes), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(num_classes), where=support > 0)
    denominator = 2 * tp + (predicted - tp) + (support - tp)
    f1 = np.divide(2 * tp, denominator, out=np.zeros(num_classes), where=denominator > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support, "_seen": denominator > 0}


def macro_f1(labels: Sequence[int], predictions: Sequence[int], num_classes: int) -> float:
    """Mean F1 over the classes present in labels or predictions."""
    table = per_class(labels, predictions, num_classes)
    seen = table["_seen"]
    return float(table["f1"][seen].mean()) if seen.any() else 0.0


def score(metric: str, labels: Sequence[int], predictions: Sequence[int], num_classes: int) -> float:
    """One of SCORES by name."""
    if metric == "balancedAccuracy":
        return balanced_accuracy(labels, predictions, num_classes)
    if metric == "macroF1":
        return macro_f1(labels, predictions, num_classes)
    if metric == "accuracy":
        return accuracy(labels, predictions)
    raise ValueError(f"metric: {metric!r} is not allowed; allowed values: {', '.join(SCORES)}")


def top_k_accuracy(labels: Sequence[int], probabilities: np.ndarray, k: int) -> float:
    """Share of images whose true class is among the k most probable."""
    labels = np.asarray(labels)
    if not len(labels):
        return 0.0
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def expected_calibration_error(
    labels: Sequence[int], probabilities: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """Mean |confidence - accuracy| over equal-width confidence bins, weighted by the bins' sizes."""
    labels = np.asarray(labels)
    if not len(labels):
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(confidence[members].mean() - correct[members].mean())
    return float(error)


@dataclass
class Report:
    """Every figure of one evaluation, for model.json, report.png and comparisons."""

    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    top_k: dict[int, float]
    calibration_error: float | None
    per_class: dict[str, list]
    confusion: np.ndarray

    def score(self, metric: str) -> float:
        return {"balancedAccuracy": self.balanced_accuracy, "macroF1": self.macro_f1}.get(
            metric, self.accuracy
        )

    def to_dict(self, classes: list[str]) -> dict:
        """The full report, per class keyed by class name (model.json; not the termination message)."""
        return {
            "accuracy": self.accuracy,
            "balancedAccuracy": self.balanced_accuracy,
            "macroF1": self.macro_f1,
            **{f"top{k}Accuracy": value for k, value in self.top_k.items()},
            "expectedCalibrationError": self.calibration_error,
            "perClass": {
                name: {key: values[i] for key, values in self.per_class.items()}
                for i, name in enumerate(classes)
            },
            "confusionMatrix": self.confusion.tolist(),
        }

    def worst_classes(self, classes: list[str], count: int = 3) -> dict[str, float]:
        """The classes with the lowest recall among those with images: compact enough for the
        termination message."""
        recall, support = self.per_class["recall"], self.per_class["support"]
        present = [i for i in range(len(classes)) if support[i] > 0]
        ranked = sorted(present, key=lambda i: (recall[i], i))[:count]
        return {classes[i]: recall[i] for i in ranked}


def report(
    labels: Sequence[int],
    predictions: Sequence[int],
    num_classes: int,
    probabilities: np.ndarray | None = None,
    top_k: tuple[int, ...] = (5,),
) -> Report:
    table = per_class(labels, predictions, num_classes)
    rows = {
        "precision": [float(v) for v in table["precision"]],
        "recall": [float(v) for v in table["recall"]],
        "f1": [float(v) for v in table["f1"]],
        "support": [int(v) for v in table["support"]],
    }
    has_probabilities = probabilities is not None and len(probabilities) == len(labels)
    tops = (
        {k: top_k_accuracy(labels, probabilities, k) for k in top_k if k < num_classes}
        if has_probabilities
        else {}
    )
    return Report(
        accuracy=accuracy(labels, predictions),
        balanced_accuracy=balanced_accuracy(labels, predictions, num_classes),
        macro_f1=macro_f1(labels, predictions, num_classes),
        top_k=tops,
        calibration_error=expected_calibration_error(labels, probabilities) if has_probabilities else None,
        per_class=rows,
        confusion=confusion_matrix(labels, predictions, num_classes),
    )
