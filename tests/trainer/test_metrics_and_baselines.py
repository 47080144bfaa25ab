"""The pure figures behind the gates: metrics from labels and predictions, baselines on given folds."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from crucible.api.trainingrun import HeldOutGateSpec
from crucible.trainer import baselines, data_checks, metrics
from crucible.trainer.gates import held_out_gate, required_lift


def test_balanced_accuracy_sees_through_a_majority_guess():
    labels = [0] * 8 + [1] * 2
    always_zero = [0] * 10
    assert metrics.accuracy(labels, always_zero) == 0.8
    assert metrics.balanced_accuracy(labels, always_zero, 2) == 0.5
    assert metrics.macro_f1(labels, always_zero, 2) == pytest.approx((16 / 18) / 2)


def test_per_class_figures_and_confusion_matrix():
    labels, predicted = [0, 0, 1, 1, 2], [0, 1, 1, 1, 0]
    report = metrics.report(labels, predicted, 3)
    assert report.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert report.per_class["precision"] == pytest.approx([0.5, 2 / 3, 0.0])
    assert report.per_class["recall"] == pytest.approx([0.5, 1.0, 0.0])
    assert report.per_class["support"] == [2, 2, 1]
    assert report.worst_classes(["a", "b", "c"], 1) == {"c": 0.0}


def test_top_k_and_calibration():
    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6]])
    labels = [1, 1, 0]
    assert metrics.top_k_accuracy(labels, probabilities, 1) == pytest.approx(1 / 3)
    assert metrics.top_k_accuracy(labels, probabilities, 2) == pytest.approx(2 / 3)
    # Confident and always right: calibrated. Confident and always wrong: off by the confidence.
    sure = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert metrics.expected_calibration_error([0, 1], sure) == 0.0
    assert metrics.expected_calibration_error([1, 0], sure) == 1.0


def test_baselines_use_exactly_the_given_folds():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 30 + [1] * 10)
    features = rng.normal(size=(40, 4)) + labels[:, None] * 3.0  # linearly separable
    folds = [(np.arange(0, 40, 2), np.arange(1, 40, 2)), (np.arange(1, 40, 2), np.arange(0, 40, 2))]
    scores = baselines.cross_validate(features, labels, folds, 2, "balancedAccuracy")
    assert scores["majority"] == [0.5, 0.5]
    assert min(scores["linear"]) > 0.9
    assert baselines.best({"majority": 0.5, "linear": 0.95}) == ("linear", 0.95)


def test_thumbnails_average_cells_of_uint8_and_float_images_alike():
    image = np.zeros((1, 1, 4, 4), dtype=np.uint8)
    image[0, 0, :2, :2] = 255
    assert baselines.thumbnails(image, 2).tolist() == [[1.0, 0.0, 0.0, 0.0]]
    assert baselines.thumbnails(image.astype(np.float32) / 255, 2).tolist() == [[1.0, 0.0, 0.0, 0.0]]


def test_the_required_lift_shrinks_only_near_a_perfect_baseline():
    assert required_lift(0.6, 0.05) == 0.05
    assert required_lift(0.96, 0.05) == pytest.approx(0.02)
    assert required_lift(1.0, 0.05) == 0.0


def test_held_out_gate_fails_an_exported_model_below_its_cv_estimate():
    spec = HeldOutGateSpec()
    good = held_out_gate(0.93, "balancedAccuracy", 0.95, ("linear", 0.8), spec)
    assert good.passed
    broken = held_out_gate(0.1, "balancedAccuracy", 0.95, ("linear", 0.8), spec)
    assert not broken.passed
    assert broken.checks["vsCrossValidation"].message == (
        "held-out balancedAccuracy 0.1 of the exported model is below the cv mean 0.95 minus 0.1"
    )
    assert (
        broken.checks["vsBaseline"].message
        == "held-out balancedAccuracy 0.1 is not above the linear baseline 0.8"
    )


def _digests(images: np.ndarray) -> list[bytes]:
    """What a source's digest() gives for pictures in memory: the sha256 of their pixels."""
    return [hashlib.sha256(image.tobytes()).digest() for image in images]


def test_duplicates_are_counted_and_named():
    images = np.random.default_rng(0).integers(0, 255, (6, 3, 4, 4), dtype=np.uint8)
    train, held_out = images[:4], np.concatenate([images[4:], images[:2]])
    names = ["a.png", "b.png", "c.png", "d.png"]
    check = data_checks.duplicates(_digests(train), _digests(held_out), names, 0)
    assert (
        check.value == 2
        and check.message == "2 held-out images also in the training split (e.g. c.png, d.png)"
    )
    clean = data_checks.duplicates(_digests(train), _digests(images[4:]), names[:2], 0)
    assert clean.passed and clean.message is None
