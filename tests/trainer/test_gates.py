"""Each gate, both ways: a healthy run passes it, a broken run fails it with a reason that names
the check, its value and its threshold."""

from __future__ import annotations

import json
import math
import os
import re

import pytest
import torch
from torch import nn

from crucible.api.result import parse_result
from crucible.trainer import gates as gates_module
from crucible.trainer import models
from crucible.trainer import run as run_module
from crucible.trainer.checks import failure_reason
from crucible.trainer.data import load_dataset
from crucible.trainer.engine import Precision
from crucible.trainer.pipeline import Pipeline
from crucible.trainer.run import RunContext, train
from crucible.trainer.survey import survey
from tests.conftest import fast_spec


def _train(tmp_path, spec):
    return train(spec, RunContext(name="t", output_dir=tmp_path, device="cpu"))


def _with_data(monkeypatch, mutate):
    """Run the real pipeline on digits altered by `mutate(data)`."""

    def altered(spec, seed, workers=0, cache_dir=None):
        data = load_dataset(spec, seed, workers, cache_dir)
        mutate(data)
        return data

    monkeypatch.setattr(run_module, "load_dataset", altered)


def test_healthy_run_passes_every_gate_and_reports_every_check(digits_artifact):
    result = json.loads((digits_artifact / "result.json").read_text())
    assert result["phase"] == "Succeeded"
    assert set(result["gates"]) == {
        "debug", "crossValidation", "baseline", "finalTraining", "overfitting", "heldOut",
    }  # fmt: skip
    assert all(gate["passed"] for gate in result["gates"].values())
    debug_checks = result["gates"]["debug"]["checks"]
    assert set(debug_checks) == {
        "labelSet", "classBalance", "duplicates", "constantImages", "smallestClass",
        "overfitOneBatch", "reproducibility", "finiteGradients",
    }  # fmt: skip
    for check in debug_checks.values():
        assert set(check) >= {"value", "threshold", "passed"} and "message" not in check
    assert debug_checks["duplicates"]["value"] == 0
    assert debug_checks["overfitOneBatch"]["threshold"] == pytest.approx(0.1 * math.log(10), rel=1e-5)
    cv = result["gates"]["crossValidation"]
    assert cv["metric"] == "balancedAccuracy"
    assert len(cv["folds"]) == 3 and cv["mean"] >= 0.8 and cv["std"] <= 0.1
    baseline = result["gates"]["baseline"]
    assert baseline["baselines"]["majority"] == pytest.approx(0.1)  # 1/K: balanced accuracy of a guess
    assert 0.5 < baseline["baselines"]["linear"] < cv["mean"] - 0.05
    assert baseline["lift"] == pytest.approx(cv["mean"] - baseline["baselines"]["linear"], abs=1e-5)
    assert result["metrics"]["baselineLift"] == pytest.approx(baseline["lift"], abs=1e-5)
    assert result["metrics"]["accuracy"] >= 0.9 and result["metrics"]["balancedAccuracy"] >= 0.9
    # The termination message keeps every verdict and figure, per class figures stay in model.json.
    message = parse_result((digits_artifact / "result.json").read_text()).to_json()
    assert len(message) < 4096 and "perClass" not in message
    assert json.loads(message)["gates"]["crossValidation"]["folds"] == cv["folds"]


def test_the_model_card_holds_per_class_figures_and_the_held_out_predictions(digits_artifact):
    card = json.loads((digits_artifact / "model.json").read_text())
    held_out = card["evaluation"]["heldOut"]
    assert set(held_out["perClass"]) == set(card["classes"])
    assert set(held_out["perClass"]["7"]) == {"precision", "recall", "f1", "support"}
    assert sum(row["support"] for row in held_out["perClass"].values()) == card["metrics"]["testImages"]
    assert len(held_out["confusionMatrix"]) == 10 and 0 <= held_out["expectedCalibrationError"] < 0.2
    assert held_out["top5Accuracy"] >= held_out["accuracy"]
    assert set(card["evaluation"]["baselines"]) == {"heldOut", "crossValidation"}
    predictions = json.loads((digits_artifact / card["predictionsFile"]).read_text())
    assert predictions["heldOutFingerprint"] == card["heldOutFingerprint"]
    assert len(predictions["predictions"]) == len(predictions["labels"]) == card["metrics"]["testImages"]


def test_random_labels_fail_the_baseline_gate(tmp_path, monkeypatch):
    generator = torch.Generator().manual_seed(0)
    _with_data(
        monkeypatch, lambda d: d.labels.copy_(d.labels[torch.randperm(len(d.labels), generator=generator)])
    )
    result = _train(tmp_path, fast_spec(gates={"debug": {"enabled": False}}))
    assert result.phase == "Failed"
    assert result.reason.startswith("baseline gate failed: lift: cv balancedAccuracy 0.")
    assert " is not 0.05 above the " in result.reason
    assert result.gates["crossValidation"].mean < 0.3
    assert not (tmp_path / "model.pt").exists(), "a model that failed its gates is never exported"


def test_diverging_learning_rate_fails_the_debug_gate(tmp_path):
    spec = fast_spec(hyperparameters={"optimizer": "sgd", "learningRate": 50.0})
    result = _train(tmp_path, spec)
    assert result.phase == "Failed"
    assert result.reason.startswith("debug gate failed: overfitOneBatch: loss ")
    assert "measured in eval mode, is not below 0.23 (0.1 x ln 10)" in result.reason
    assert "crossValidation" not in result.gates, "a failed gate stops the run"


def test_missing_fixed_class_fails_the_label_set_check(tmp_path):
    result = _train(tmp_path, fast_spec(dataset={"classes": ["0", "1", "eleven"]}))
    assert result.phase == "Failed"
    assert result.reason == "debug gate failed: labelSet: class 'eleven' has no images"


def test_a_30_to_1_imbalance_fails_the_class_balance_check(tmp_path, monkeypatch):
    def imbalanced(d):
        keep = torch.cat([torch.nonzero(d.labels != 3).flatten(), torch.nonzero(d.labels == 3).flatten()[:6]])
        d.items, d.labels = d.items[keep.numpy()], d.labels[keep]

    _with_data(monkeypatch, imbalanced)
    result = _train(tmp_path, fast_spec(gates={"crossValidation": {"enabled": False}}))
    assert result.phase == "Failed"
    assert re.match(
        r"debug gate failed: classBalance: class '3' has \d images, class '\d' has \d+ \(ratio 0\.0\d+, "
        r"must be >= 0.2\)",
        result.reason,
    ), result.reason


def test_images_shared_by_train_and_held_out_are_reported(tmp_path, monkeypatch):
    # Every tenth image copied over its neighbour: some pairs straddle the split. Digits' content
    # digests are of their pixels, so the copies are found without decoding anything.
    def copied(d):
        pixels = d.source.pixels
        pixels[1::10] = pixels[0::10][: len(pixels[1::10])]

    _with_data(monkeypatch, copied)
    result = _train(tmp_path, fast_spec(gates={"crossValidation": {"enabled": False}}))
    assert result.phase == "Failed"
    check = result.gates["debug"].checks["duplicates"]
    assert check.value > 0
    assert result.reason.startswith(
        f"debug gate failed: duplicates: {int(check.value)} held-out images also in "
    )
    assert "(e.g. digits[" in result.reason


def test_a_blank_image_fails_the_constant_images_check(tmp_path, monkeypatch):
    def blank(d):
        d.source.pixels[5] = 0  # read through the pipeline like every other image

    _with_data(monkeypatch, blank)
    result = _train(tmp_path, fast_spec(gates={"crossValidation": {"enabled": False}}))
    assert result.phase == "Failed"
    assert result.reason.startswith("debug gate failed: constantImages: 1 constant or near-constant images")


class _Offset(nn.Module):
    """Puts the first BatchNorm's inputs far from its initial running statistics (mean 0, var 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 2.0


@pytest.mark.parametrize(("momentum", "passes"), [(0.1, True), (0.01, False)])
def test_batchnorm_that_lags_in_eval_mode_fails_overfit_one_batch(monkeypatch, momentum, passes):
    # torchvision's MobileNet momentum, 0.01: in 30 steps the running mean moves a quarter of the way,
    # so the batch that train mode fits is misclassified in eval mode, as the exported model would.
    monkeypatch.setattr(models, "BATCHNORM_MOMENTUM", momentum)
    build = gates_module.build_model
    monkeypatch.setattr(gates_module, "build_model", lambda *a, **k: nn.Sequential(_Offset(), build(*a, **k)))
    spec = fast_spec(gates={"crossValidation": {"enabled": False}})
    data = load_dataset(spec.dataset, spec.seed)
    held_out = data.subset([])
    pipeline = Pipeline(spec.dataset.image_size, spec.dataset.resize_policy, None, torch.device("cpu"))
    surveys = (survey(data, pipeline, 3), survey(held_out, pipeline, 3))
    norm = pipeline.normalization(data, spec.seed)
    report = gates_module.debug_gate(
        spec, data, held_out, surveys, data, pipeline, norm, Precision(torch.device("cpu"))
    )
    check = report.checks["overfitOneBatch"]
    assert check.passed is passes
    if not passes:
        assert failure_reason("debug", report).startswith("debug gate failed: overfitOneBatch: loss ")
        assert "measured in eval mode, is not below 0.23 (0.1 x ln 10)" in check.message


class _Jitter(nn.Module):
    """Noise from an unseeded generator: the same seed gives different weights on every run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
        return x + 0.05 * torch.randn(x.shape, generator=noise)


def test_a_non_deterministic_op_fails_reproducibility(tmp_path, monkeypatch):
    build = gates_module.build_model
    monkeypatch.setattr(gates_module, "build_model", lambda *a, **k: nn.Sequential(_Jitter(), build(*a, **k)))
    result = _train(tmp_path, fast_spec(gates={"crossValidation": {"enabled": False}}))
    assert result.phase == "Failed"
    assert result.reason.startswith(
        "debug gate failed: reproducibility: two seeded fits of two batches gave "
    )


def test_a_final_fit_that_diverges_fails_final_training_and_exports_nothing(tmp_path, monkeypatch):
    real_fit = run_module.fit

    def diverging(model, feed, hp, *args, **kwargs):  # the gates trained well; only this fit explodes
        return real_fit(
            model, feed, hp.model_copy(update={"learning_rate": 1e9, "optimizer": "sgd"}), *args, **kwargs
        )

    monkeypatch.setattr(run_module, "fit", diverging)
    result = _train(tmp_path, fast_spec(gates={"debug": {"enabled": False}}))
    assert result.phase == "Failed"
    assert result.gates["crossValidation"].passed and result.gates["baseline"].passed
    assert result.reason == (
        "finalTraining gate failed: finiteLoss: the loss or a gradient became NaN or infinite in the final fit"
    )
    assert not (tmp_path / "model.pt").exists()


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
        assert not {"accuracy", "balancedAccuracy", "macroF1", "loss"} & set(figures), "held-out stays out"
        seen.append((epoch, figures["valBalancedAccuracy"]))
        if epoch == 2:
            raise Stop

    spec = fast_spec(gates={"debug": {"enabled": False}, "crossValidation": {"enabled": False}})
    with pytest.raises(Stop):
        train(spec, RunContext(name="t", output_dir=tmp_path, device="cpu", on_epoch=hook))
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert all(0 <= accuracy <= 1 for _, accuracy in seen)
