"""The drift signal: over the last N predictions of a model, the share of each predicted class and the
mean top-1 score, and how far that class distribution departs from the training distribution.

The divergence is Jensen-Shannon with base-2 logarithms: symmetric, defined when a class is absent
from one side, and between 0 (the same distribution) and 1 (no class in common). A model that sees
what it was trained on predicts classes roughly in their training shares; a shifted input
distribution (a new camera, inverted colours) moves the predictions, and the divergence with them.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_WINDOW = 1000


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence (base 2, 0..1) of two distributions over the same classes; each is
    normalized first, and an all-zero side counts as uniform."""
    a, b = _distribution(p), _distribution(q)
    m = (a + b) / 2

    def kl(x: np.ndarray) -> float:
        present = x > 0
        return float(np.sum(x[present] * np.log2(x[present] / m[present])))

    return min(1.0, max(0.0, (kl(a) + kl(b)) / 2))


def _distribution(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    total = array.sum()
    return array / total if total > 0 else np.full(len(array), 1 / len(array))


@dataclass(frozen=True)
class DriftSnapshot:
    window: int
    predicted_share: dict[str, float]
    training_share: dict[str, float]
    divergence: float
    mean_top_score: float

    def to_dict(self) -> dict:
        return {
            "window": self.window,
            "predictedShare": self.predicted_share,
            "trainingShare": self.training_share,
            "divergence": self.divergence,
            "meanTopScore": self.mean_top_score,
        }


class DriftWindow:
    """The last `size` predictions (class index, top-1 score), with running counts: adding a batch
    costs O(batch), a snapshot O(classes). Safe to add from one thread and read from another."""

    def __init__(
        self, classes: list[str], training_counts: Sequence[float] | None, size: int = DEFAULT_WINDOW
    ) -> None:
        if size < 1:
            raise ValueError(f"drift window must be at least 1, got {size}")
        self.classes = classes
        self.size = size
        self.training = _distribution(training_counts if training_counts else [1.0] * len(classes))
        self._entries: deque[tuple[int, float]] = deque()
        self._counts = np.zeros(len(classes), dtype=np.int64)
        self._score_sum = 0.0
        self._lock = threading.Lock()

    def add(self, probabilities: np.ndarray) -> None:
        """The predictions of a batch: probabilities [N, C]."""
        best = probabilities.argmax(axis=1)
        scores = probabilities[np.arange(len(best)), best]
        with self._lock:
            for index, score in zip(best.tolist(), scores.tolist(), strict=True):
                self._entries.append((index, score))
                self._counts[index] += 1
                self._score_sum += score
                if len(self._entries) > self.size:
                    old_index, old_score = self._entries.popleft()
                    self._counts[old_index] -= 1
                    self._score_sum -= old_score

    def snapshot(self) -> DriftSnapshot:
        with self._lock:
            counts, window, score_sum = self._counts.copy(), len(self._entries), self._score_sum
        predicted = counts / window if window else np.zeros(len(self.classes))
        return DriftSnapshot(
            window=window,
            predicted_share={name: float(share) for name, share in zip(self.classes, predicted, strict=True)},
            training_share={name: float(s) for name, s in zip(self.classes, self.training, strict=True)},
            divergence=js_divergence(predicted, self.training) if window else 0.0,
            mean_top_score=score_sum / window if window else 0.0,
        )
