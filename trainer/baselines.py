"""Trivial models fitted on exactly the folds and the held-out split the network uses.

A network is only worth exporting when it beats what a majority-class guess and a linear model on a
thumbnail of each image already reach. Pure numpy and scikit-learn on arrays: no torch, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from crucible.trainer import metrics

BASELINES = ("majority", "linear")
LINEAR_MAX_ITER = 300


def thumbnails(images: np.ndarray, size: int) -> np.ndarray:
    """[N, C, H, W] images (uint8 pixels, or floats in [0, 1]) averaged to size x size per channel, as
    [N, C * size * size] features in [0, 1]. Cells span the image like adaptive average pooling."""
    pixels = np.asarray(images, dtype=np.float64)
    if np.asarray(images).dtype == np.uint8:
        pixels = pixels / 255.0
    n, c, h, w = pixels.shape
    rows = [(i * h // size, -(-(i + 1) * h // size)) for i in range(size)]
    cols = [(j * w // size, -(-(j + 1) * w // size)) for j in range(size)]
    cells = [pixels[:, :, r0:r1, c0:c1].mean(axis=(2, 3)) for r0, r1 in rows for c0, c1 in cols]
    return np.stack(cells, axis=2).reshape(n, c * size * size)


def _majority(train_labels: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    most = int(np.bincount(train_labels).argmax())
    return lambda features: np.full(len(features), most, dtype=np.int64)


def _linear(features: np.ndarray, train_labels: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    if len(np.unique(train_labels)) < 2:  # one class: nothing to separate
        return _majority(train_labels)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=LINEAR_MAX_ITER))
    model.fit(features, train_labels)
    return model.predict


def fit_and_score(
    features: np.ndarray,
    labels: np.ndarray,
    fit_index: np.ndarray,
    eval_index: np.ndarray,
    num_classes: int,
    metric: str,
) -> dict[str, float]:
    """Every baseline fitted on `fit_index` and scored with `metric` on `eval_index`."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    fit_x, fit_y = features[fit_index], labels[fit_index]
    eval_x, eval_y = features[eval_index], labels[eval_index]
    scores = {}
    with warnings.catch_warnings():  # an unconverged baseline is still a baseline
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, predictor in (("majority", _majority(fit_y)), ("linear", _linear(fit_x, fit_y))):
            scores[name] = metrics.score(metric, eval_y, predictor(eval_x), num_classes)
    return scores


def cross_validate(
    features: np.ndarray,
    labels: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    metric: str,
) -> dict[str, list[float]]:
    """Per-fold scores of every baseline on exactly the given (fit, validation) folds."""
    per_fold = [fit_and_score(features, labels, fit, held, num_classes, metric) for fit, held in folds]
    return {name: [scores[name] for scores in per_fold] for name in BASELINES}


def best(scores: dict[str, float]) -> tuple[str, float]:
    """The strongest baseline and its score (the first one on a tie)."""
    name = max(BASELINES, key=lambda n: scores[n])
    return name, scores[name]
