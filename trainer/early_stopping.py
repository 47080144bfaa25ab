"""Early stopping on the validation split: stop after `patience` epochs without improvement and keep
the best epoch's weights."""

from __future__ import annotations

import copy
import math

from torch import nn

from crucible.api.trainingrun import EarlyStoppingSpec


class EarlyStopping:
    def __init__(self, spec: EarlyStoppingSpec, model: nn.Module) -> None:
        self.spec = spec
        self.model = model
        self.best: float | None = None
        self.best_epoch = 0
        self.best_state: dict | None = None

    def _value(self, evaluation) -> float:
        if self.spec.metric == "loss":
            return -evaluation.loss  # higher is better throughout
        return evaluation.score(self.spec.metric)

    def update(self, epoch: int, evaluation) -> bool:
        """Record this epoch's validation figure; True when training should stop."""
        value = self._value(evaluation)
        if math.isfinite(value) and (self.best is None or value > self.best):
            self.best, self.best_epoch = value, epoch
            self.best_state = copy.deepcopy(self.model.state_dict())
        return epoch - self.best_epoch >= self.spec.patience

    def state_dict(self) -> dict:
        """What a checkpoint keeps, so a resumed fit stops where an uninterrupted one would."""
        return {"best": self.best, "bestEpoch": self.best_epoch, "bestState": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.best_state = state["best"], state["bestEpoch"], state["bestState"]

    def restore(self, model: nn.Module) -> None:
        """The best epoch's weights back into the model (nothing to do if the last epoch was best)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
