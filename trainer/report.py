"""report.png: learning curves, per-fold cross-validation scores, confusion matrix, per-class scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_report(
    path: Path,
    history: list[dict],
    folds: list[float] | None,
    confusion: np.ndarray | None,
    classes: list[str],
    per_class: dict | None,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    curves, fold_axis, matrix_axis, class_axis = axes
    if history:
        epochs = [h["epoch"] for h in history]
        curves.plot(epochs, [h["trainLoss"] for h in history], label="train loss")
        curves.plot(epochs, [h["trainAccuracy"] for h in history], label="train accuracy")
        if "valAccuracy" in history[0]:
            curves.plot(epochs, [h["valAccuracy"] for h in history], label="validation accuracy")
            curves.plot(epochs, [h["valLoss"] for h in history], label="validation loss", linestyle="--")
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
    if per_class:
        positions = np.arange(len(classes))
        width = 0.27
        for offset, key in zip((-width, 0.0, width), ("precision", "recall", "f1"), strict=True):
            class_axis.bar(positions + offset, per_class[key], width, label=key)
        class_axis.set_xticks(positions, classes, rotation=90 if len(classes) > 12 else 0)
        class_axis.set_ylim(0, 1.05)
        class_axis.legend(fontsize=7)
    class_axis.set_title("Per class (held-out)")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
