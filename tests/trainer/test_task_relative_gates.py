"""Gates judged against the task, not against digits: trivial baselines on the same folds, and bounds
that scale with the number of classes. Synthetic images made here, small enough to train in seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from crucible.trainer import run as run_module
from crucible.trainer.data import ArraySource, ImageData
from crucible.trainer.run import RunContext, train
from tests.conftest import fast_spec


def _use(monkeypatch, data: ImageData) -> None:
    monkeypatch.setattr(run_module, "load_dataset", lambda spec, seed, workers=0, cache_dir=None: data)


def _images(pixels: np.ndarray, labels: np.ndarray, classes: list[str]) -> ImageData:
    """[N, H, W] grey levels in [0, 1] as in-memory pictures, read through the pipeline like any."""
    grey = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    source = ArraySource(grey, labels, classes)
    return ImageData(source, np.arange(len(labels)), torch.tensor(labels), classes)


def _binary_80_20(learnable: bool, size: int = 16, count: int = 200) -> ImageData:
    """160 images of class 'common', 40 of 'rare'. Learnable: horizontal against vertical stripes at a
    random phase (the same mean brightness everywhere, so a thumbnail cannot tell them apart); not
    learnable: the same noise for both classes."""
    rng = np.random.default_rng(1)
    labels = np.array([0] * (count * 4 // 5) + [1] * (count // 5))
    pixels = rng.uniform(0, 1, (count, size, size)) * 0.3 + 0.35
    if learnable:
        rows = np.arange(size)
        for i, label in enumerate(labels):
            stripes = ((rows + rng.integers(0, 4)) // 2 % 2).astype(float)
            pattern = stripes[:, None] if label == 0 else stripes[None, :]
            pixels[i] = 0.2 + 0.6 * np.broadcast_to(pattern, (size, size)) + rng.normal(0, 0.05, (size, size))
    return _images(pixels, labels, ["common", "rare"])


BINARY_SPEC = {
    "dataset": {"imageSize": 16},
    "hyperparameters": {"epochs": 6, "batchSize": 32},
    "gates": {"debug": {"enabled": False}, "crossValidation": {"epochs": 4}},
}


def test_a_model_that_learns_nothing_on_80_20_data_fails_the_baseline_gate(tmp_path, monkeypatch):
    _use(monkeypatch, _binary_80_20(learnable=False))
    result = train(fast_spec(**BINARY_SPEC), RunContext(name="noise", output_dir=tmp_path, device="cpu"))
    assert result.phase == "Failed"
    # Guessing 'common' scores accuracy 0.8, but balanced accuracy 0.5: no better than the majority.
    assert result.gates["baseline"].baselines["majority"] == pytest.approx(0.5)
    assert result.reason.startswith("baseline gate failed: lift: cv balancedAccuracy 0.")
    assert result.gates["crossValidation"].mean < 0.62
    assert not (tmp_path / "model.pt").exists()


def test_a_model_that_learns_80_20_data_passes_the_baseline_gate(tmp_path, monkeypatch):
    _use(monkeypatch, _binary_80_20(learnable=True))
    result = train(fast_spec(**BINARY_SPEC), RunContext(name="stripes", output_dir=tmp_path, device="cpu"))
    assert result.phase == "Succeeded", result.reason
    baseline = result.gates["baseline"]
    assert max(baseline.baselines.values()) < 0.7 and baseline.lift >= 0.25
    assert result.metrics["balancedAccuracy"] >= 0.9


def _fifty_classes(per_class: int = 10, size: int = 18) -> ImageData:
    """50 classes, each a fixed random pattern whose 6x6 cells average to grey, plus noise."""
    rng = np.random.default_rng(2)
    templates = rng.choice([-1.0, 1.0], (50, size, size))
    cells = templates.reshape(50, 3, size // 3, 3, size // 3).mean(axis=(2, 4), keepdims=True)
    templates = (templates.reshape(50, 3, size // 3, 3, size // 3) - cells).reshape(50, size, size)
    labels = np.repeat(np.arange(50), per_class)
    pixels = 0.5 + 0.25 * templates[labels] + rng.normal(0, 0.1, (len(labels), size, size))
    return _images(pixels, labels, [f"c{i:02d}" for i in range(50)])


def test_a_50_class_task_passes_with_chance_relative_thresholds(tmp_path, monkeypatch):
    _use(monkeypatch, _fifty_classes())
    spec = fast_spec(
        dataset={"imageSize": 18, "validationFraction": 0.15},
        hyperparameters={"epochs": 10, "batchSize": 32},
        gates={"crossValidation": {"epochs": 8}},
    )
    result = train(spec, RunContext(name="fifty", output_dir=tmp_path, device="cpu"))
    assert result.phase == "Succeeded", result.reason
    overfit = result.gates["debug"].checks["overfitOneBatch"]
    assert overfit.threshold == pytest.approx(0.1 * math.log(50))
    baseline = result.gates["baseline"]
    assert baseline.baselines["majority"] == pytest.approx(1 / 50)
    assert baseline.baselines["linear"] < 0.1  # the thumbnails are all grey
    assert result.gates["crossValidation"].mean > 0.5
