"""Early stopping on the validation split: stop after `patience` epochs without improvement, keep the
best epoch's weights."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from crucible.api.trainingrun import EarlyStoppingSpec
from crucible.trainer.early_stopping import EarlyStopping


def _evaluation(loss: float) -> SimpleNamespace:
    return SimpleNamespace(loss=loss, score=lambda metric: 1.0 - loss)


def test_stops_after_patience_epochs_without_a_lower_validation_loss_and_restores_the_best():
    model = nn.Linear(2, 2)
    stopper = EarlyStopping(EarlyStoppingSpec(patience=2, metric="loss"), model)
    decisions = []
    for epoch, loss in enumerate([0.9, 0.5, 0.6, 0.7, 0.4], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        decisions.append(stopper.update(epoch, _evaluation(loss)))
        if decisions[-1]:
            break
    assert decisions == [False, False, False, True]
    stopper.restore(model)
    assert stopper.best_epoch == 2 and torch.all(model.weight == 2)


def test_a_rising_score_never_stops():
    stopper = EarlyStopping(EarlyStoppingSpec(patience=1, metric="balancedAccuracy"), nn.Linear(1, 1))
    assert not any(stopper.update(epoch, _evaluation(1.0 - epoch / 10)) for epoch in range(1, 6))
