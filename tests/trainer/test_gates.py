"""Each gate, both ways: a healthy run passes it, a broken run fails it with a reason that names
the check, its value and its threshold."""

from __future__ import annotations

import json
import re

import pytest
import torch

from crucible.trainer import run as run_module
from crucible.trainer.data import load_dataset
from crucible.trainer.run import RunContext, train
from tests.conftest import fast_spec


def _train(tmp_path, spec):
    return train(spec, RunContext(name="t", output_dir=tmp_path, device="cpu"))


def _with_data(monkeypatch, mutate):
    """Run the real pipeline on digits altered by `mutate(data)`."""

    def altered(spec, seed, workers=0):
        data = load_dataset(spec, seed, workers)
        mutate(data)
        return data

    monkeypatch.setattr(run_module, "load_dataset", altered)


def test_healthy_run_passes_every_gate_and_reports_every_check(digits_artifact):
    result = json.loads((digits_artifact / "result.json").read_text())
    assert result["phase"] == "Succeeded"
    assert set(result["gates"]) == {
        "debug", "crossValidation", "baseline", "finalTraining", "heldOut", "overfitting",
    }  # fmt: skip
    assert all(gate["passed"] for gate in result["gates"].values())
    debug_checks = result["gates"]["debug"]["checks"]
    assert set(debug_checks) == {
        "labelSet", "classBalance", "duplicates", "constantImages", "smallestClass",
        "overfitOneBatch", "reproducibility", "finiteGradients",
    }  # fmt: skip
    for check in debug_checks.values():
        assert set(check) >= {"value", "threshold", "passed"}
    cv = result["gates"]["crossValidation"]
    assert len(cv["folds"]) == 3 and cv["mean"] >= 0.8 and cv["std"] <= 0.1
    assert result["metrics"]["accuracy"] >= 0.9


def test_random_labels_fail_the_cross_validation_gate(tmp_path, monkeypatch):
    generator = torch.Generator().manual_seed(0)
    _with_data(
        monkeypatch, lambda d: d.labels.copy_(d.labels[torch.randperm(len(d.labels), generator=generator)])
    )
    result = _train(tmp_path, fast_spec(gates={"debug": {"enabled": False}}))
    assert result.phase == "Failed"
    assert result.reason.startswith("crossValidation gate failed: mean: cv balancedAccuracy 0.")
    assert result.reason.endswith("is below 0.8")
    assert result.gates["crossValidation"].mean < 0.3
    assert not (tmp_path / "model.pt").exists(), "a model that failed its gates is never exported"


def test_diverging_learning_rate_fails_the_debug_gate(tmp_path):
    spec = fast_spec(hyperparameters={"optimizer": "sgd", "learningRate": 50.0})
    result = _train(tmp_path, spec)
    assert result.phase == "Failed"
    assert result.reason.startswith("debug gate failed: overfitOneBatch: loss ")
    assert "measured in eval mode, is not below 0.23 (0.1 x ln 10)" in result.reason
    assert "crossValidation" not in result.gates, "a failed gate stops the run"


def test_blank_images_read_through_the_pipeline_fail_the_data_checks(tmp_path, monkeypatch):
    def blank_the_first_five(data):
        data.source.pixels[:5] = 128

    _with_data(monkeypatch, blank_the_first_five)
    result = _train(tmp_path, fast_spec())
    assert result.phase == "Failed"
    assert result.reason.startswith("debug gate failed: constantImages: 5 constant or near-constant images")
    named = [int(i) for i in re.findall(r"digits\[(\d+)\]", result.reason)]
    assert named and all(i < 5 for i in named), "the message names the blank images"
    assert "overfitOneBatch" not in result.gates["debug"].checks, "no training on broken data"


def test_images_in_both_splits_fail_the_duplicates_check_by_content(tmp_path, monkeypatch):
    def copy_the_first_image_forty_times(data):
        data.source.pixels[1:41] = data.source.pixels[0]

    _with_data(monkeypatch, copy_the_first_image_forty_times)
    result = _train(tmp_path, fast_spec())
    assert result.phase == "Failed"
    duplicates = result.gates["debug"].checks["duplicates"]
    assert duplicates.value > 0 and not duplicates.passed
    assert result.reason.startswith(
        f"debug gate failed: duplicates: {duplicates.value:.0f} held-out images also in the training split"
    )


def test_missing_fixed_class_fails_the_label_set_check(tmp_path):
    result = _train(tmp_path, fast_spec(dataset={"classes": ["0", "1", "eleven"]}))
    assert result.phase == "Failed"
    assert result.reason == "debug gate failed: labelSet: class 'eleven' has no images"


def test_train_validation_gap_fails_the_overfitting_gate(tmp_path):
    # Few images and many epochs: the model memorises its training split.
    spec = fast_spec(
        dataset={"sampleFraction": 0.1},
        hyperparameters={"epochs": 30},
        gates={
            "crossValidation": {"enabled": False},
            "debug": {"enabled": False},
            "overfitting": {"maxGap": 0.02},
        },
    )
    result = _train(tmp_path, spec)
    assert result.phase == "Failed"
    gap = result.gates["overfitting"].checks["gap"]
    assert gap.value > 0.02 and not gap.passed
    assert result.metrics["trainAccuracy"] - result.metrics["accuracy"] == pytest.approx(gap.value, abs=1e-6)
    assert result.reason.startswith("overfitting gate failed: gap = ")


def test_same_seed_gives_the_same_numbers_and_weights(tmp_path):
    spec = fast_spec(gates={"crossValidation": {"enabled": False}})
    first = _train(tmp_path / "a", spec)
    second = _train(tmp_path / "b", spec)
    assert first.artifact.sha256 == second.artifact.sha256
    for key in ("accuracy", "loss", "trainLoss"):
        assert first.metrics[key] == second.metrics[key]
    other_seed = _train(tmp_path / "c", spec.model_copy(update={"seed": 8}))
    assert other_seed.artifact.sha256 != first.artifact.sha256


def test_epoch_hook_sees_validation_figures_and_can_stop_the_run(tmp_path):
    class Stop(Exception):
        pass

    seen = []

    def hook(epoch, figures):
        assert "accuracy" not in figures, "the held-out split is touched once, after training"
        seen.append((epoch, figures["valAccuracy"]))
        if epoch == 2:
            raise Stop

    spec = fast_spec(gates={"debug": {"enabled": False}, "crossValidation": {"enabled": False}})
    with pytest.raises(Stop):
        train(spec, RunContext(name="t", output_dir=tmp_path, device="cpu", on_epoch=hook))
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert all(0 <= accuracy <= 1 for _, accuracy in seen)
