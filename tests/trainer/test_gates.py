"""Each gate, both ways: a healthy run passes it, a broken run fails it with a reason that names
the check, its value and its threshold."""

from __future__ import annotations

import json

import pytest
import torch

from crucible.trainer import pipeline as pipeline_module
from crucible.trainer import run as run_module
from crucible.trainer.data import load_dataset
from crucible.trainer.pipeline import Normalization
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
    assert set(result["gates"]) == {"debug", "crossValidation", "overfitting"}
    assert all(gate["passed"] for gate in result["gates"].values())
    debug_checks = result["gates"]["debug"]["checks"]
    assert set(debug_checks) == {
        "finiteValues", "labelSet", "classBalance", "normalizedMean", "normalizedStd",
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
    assert result.reason.startswith("crossValidation gate failed: mean = 0.")
    assert "(must be >= 0.8)" in result.reason
    assert result.gates["crossValidation"].mean < 0.3
    assert not (tmp_path / "model.pt").exists(), "a model that failed its gates is never exported"


def test_diverging_learning_rate_fails_the_debug_gate(tmp_path):
    spec = fast_spec(hyperparameters={"optimizer": "sgd", "learningRate": 50.0})
    result = _train(tmp_path, spec)
    assert result.phase == "Failed"
    assert result.reason.startswith("debug gate failed: overfitOneBatch = ")
    assert "(must be < 0.2)" in result.reason
    assert "crossValidation" not in result.gates, "a failed gate stops the run"


def test_non_finite_normalized_data_fails_the_data_checks(tmp_path, monkeypatch):
    def zero_std(data, transform, seed):
        return Normalization((0.1, 0.1, 0.1), (0.0, 1.0, 1.0))  # dividing by 0: inf and NaN pixels

    monkeypatch.setattr(pipeline_module, "normalization_of", zero_std)
    result = _train(tmp_path, fast_spec())
    assert result.phase == "Failed"
    assert result.reason.startswith("debug gate failed: finiteValues = ")
    assert result.gates["debug"].checks["finiteValues"].value > 0
    assert "overfitOneBatch" not in result.gates["debug"].checks, "no training on broken data"


def test_missing_fixed_class_fails_the_label_set_check(tmp_path):
    result = _train(tmp_path, fast_spec(dataset={"classes": ["0", "1", "eleven"]}))
    assert result.phase == "Failed"
    assert result.reason == "debug gate failed: labelSet = 1 (must be <= 0)"


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


def test_epoch_hook_sees_held_out_figures_and_can_stop_the_run(tmp_path):
    class Stop(Exception):
        pass

    seen = []

    def hook(epoch, figures):
        seen.append((epoch, figures["accuracy"]))
        if epoch == 2:
            raise Stop

    spec = fast_spec(gates={"debug": {"enabled": False}, "crossValidation": {"enabled": False}})
    with pytest.raises(Stop):
        train(spec, RunContext(name="t", output_dir=tmp_path, device="cpu", on_epoch=hook))
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert all(0 <= accuracy <= 1 for _, accuracy in seen)
