"""report.png: learning curves, per-fold cross-validation scores, confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_report(
    path: Path,
    history: list[dict],
    folds: list[float] | None,
    confusion: np.ndarray | None,
    classes: list[str],
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    curves, fold_axis, matrix_axis = axes
    if history:
        epochs = [h["epoch"] for h in history]
        curves.plot(epochs, [h["trainLoss"] for h in history], label="train loss")
        curves.plot(epochs, [h["trainAccuracy"] for h in history], label="train accuracy")
        if "valAccuracy" in history[0]:
            curves.plot(epochs, [h["valAccuracy"] for h in history], label="held-out accuracy")
            curves.plot(epochs, [h["valLoss"] for h in history], label="held-out loss", linestyle="--")
        curves.set_xlabel("epoch")
        curves.legend()
    curves.set_title("Learning curves")
    if folds:
        fold_axis.bar([str(i + 1) for i in range(len(folds))], folds, color="tab:blue")
        mean = float(np.mean(folds))
        fold_axis.axhline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.3f}")
        fold_axis.set_ylim(max(0.0, min(folds) - 0.1), 1.0)
        fold_axis.set_xlabel("fold")
        fold_axis.legend()
    fold_axis.set_title("Cross-validation scores")
    if confusion is not None:
        matrix_axis.imshow(confusion, cmap="Blues")
        ticks = range(len(classes))
        matrix_axis.set_xticks(ticks, classes, rotation=90 if len(classes) > 12 else 0)
        matrix_axis.set_yticks(ticks, classes)
        matrix_axis.set_xlabel("predicted")
        matrix_axis.set_ylabel("true")
        if len(classes) <= 20:
            for (i, j), count in np.ndenumerate(confusion):
                if count:
                    matrix_axis.text(j, i, str(count), ha="center", va="center", fontsize=7)
    matrix_axis.set_title("Confusion matrix (held-out)")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def confusion_matrix(predicted: list[int], labels: list[int], num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for truth, guess in zip(labels, predicted, strict=True):
        matrix[truth, guess] += 1
    return matrix
