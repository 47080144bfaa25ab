"""The cross-validation folds, computed once so the network and the baselines use the same ones."""

from __future__ import annotations

import numpy as np

Fold = tuple[np.ndarray, np.ndarray]


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> list[Fold]:
    """(fit, validation) index pairs of a seeded stratified k-fold. Every class needs at least `folds`
    images; the debug gate's smallestClass check says so in plain words first."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    return list(splitter.split(np.zeros(len(labels)), labels))
