"""The ONNX copy of a trained model: written at export, checked against PyTorch, recorded in the card,
and never a reason for a run to fail."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from crucible.checksums import sha256_of
from crucible.trainer import onnx_export
from crucible.trainer.models import build_model


def _held_out_logits(artifact: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The digits model's held-out-like inputs (normalized digits), PyTorch's logits and ONNX's."""
    from sklearn.datasets import load_digits

    card = json.loads((artifact / "model.json").read_text())
    network = build_model(card["architecture"], card["numClasses"], card["dropout"])
    network.load_state_dict(torch.load(artifact / "model.pt", map_location="cpu", weights_only=True))
    pixels = torch.from_numpy(load_digits().images[:200] / 16).float()
    images = torch.nn.functional.interpolate(pixels[:, None], size=16, mode="bilinear").repeat(1, 3, 1, 1)
    mean = torch.tensor(card["normalization"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(card["normalization"]["std"]).view(1, 3, 1, 1)
    images = ((images - mean) / std).contiguous()
    return (
        images.numpy(),
        onnx_export.torch_logits(network, images),
        onnx_export.onnx_logits(artifact / "model.onnx", images.numpy()),
    )


def test_a_trained_model_is_exported_to_onnx_and_verified_in_its_card(digits_artifact: Path) -> None:
    card = json.loads((digits_artifact / "model.json").read_text())
    onnx = card["onnx"]
    assert onnx["verified"] is True, onnx
    assert onnx["opset"] == onnx_export.OPSET
    assert onnx["sha256"] == sha256_of(digits_artifact / "model.onnx")
    check = onnx["check"]
    assert check["images"] == card["metrics"]["testImages"]
    assert check["top1Differs"] == 0
    assert check["maxAbsDiff"] <= check["tolerance"] == onnx_export.TOLERANCE


def test_the_onnx_digits_model_answers_as_pytorch_does_at_any_batch_size(digits_artifact: Path) -> None:
    _, expected, actual = _held_out_logits(digits_artifact)
    assert actual.shape == expected.shape == (200, 10)  # the batch axis is dynamic
    assert (actual.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert np.abs(actual - expected).max() <= onnx_export.TOLERANCE


def test_the_int8_copy_records_its_measured_accuracy_drop_against_the_limit(digits_artifact: Path) -> None:
    int8 = json.loads((digits_artifact / "model.json").read_text())["onnx"]["int8"]
    assert int8["file"] == onnx_export.INT8_FILE
    assert int8["sha256"] == sha256_of(digits_artifact / onnx_export.INT8_FILE)
    assert int8["maxAccuracyDrop"] == 0.01  # the spec's default serve.maxAccuracyDrop
    assert int8["allowed"] == (int8["accuracyDrop"] <= 0.01)
    assert 0 < int8["heldOutAccuracy"] <= 1


def test_a_224_mobilenet_with_random_weights_exports_with_identical_top1(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 10, 0.2)
    images = torch.randn(6, 3, 224, 224)
    # Fresh batch-norm statistics shrink the activations layer after layer until every image gets the
    # same logits, about 1e-7; statistics of real activations make the top-1 class depend on the image,
    # so that the comparison means something.
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.reset_running_stats()
            layer.momentum = None  # a plain average of what it sees
    with torch.no_grad():
        model.train()(torch.randn(16, 3, 224, 224))
    model.eval()
    torch.nn.init.normal_(model.classifier[-1].weight, std=1.0)  # and a classifier that tells them apart
    labels = torch.arange(6) % 10
    record = onnx_export.export_checked(
        model, tmp_path, onnx_export.batches_of(images, labels), max_accuracy_drop=0.01
    )["onnx"]
    assert record["verified"] is True, record
    assert record["check"]["top1Differs"] == 0
    assert record["check"]["maxAbsDiff"] <= onnx_export.TOLERANCE
    expected = onnx_export.torch_logits(model, images)
    assert len(set(expected.argmax(axis=1).tolist())) > 1, expected  # the images get different answers


def test_without_onnxruntime_the_card_says_not_verified_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    model = build_model("tiny_cnn", 3, 0.0)
    record = onnx_export.export_checked(
        model, tmp_path, onnx_export.batches_of(torch.randn(4, 3, 16, 16), torch.zeros(4)), 0.01
    )
    assert record == {
        "onnx": {"verified": False, "reason": "onnxruntime is not installed where the model trained"}
    }


def test_a_failed_export_is_recorded_and_leaves_no_onnx_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def export_half_and_fail(model, args, path, **_) -> None:
        Path(path).write_bytes(b"partial")
        raise RuntimeError(
            "Exporting the operator 'aten::frobnicate' to ONNX opset version 17 is not supported"
        )

    monkeypatch.setattr(torch.onnx, "export", export_half_and_fail)
    model = build_model("tiny_cnn", 3, 0.0)
    record = onnx_export.export_checked(
        model, tmp_path, onnx_export.batches_of(torch.randn(4, 3, 16, 16), torch.zeros(4)), 0.01
    )
    assert record == {
        "onnx": {
            "verified": False,
            "reason": "export failed: RuntimeError: Exporting the operator 'aten::frobnicate' to ONNX "
            "opset version 17 is not supported",
        }
    }
    assert not (tmp_path / onnx_export.ONNX_FILE).exists()


def test_a_wrong_onnx_model_fails_the_check_naming_the_difference() -> None:
    expected = np.array([[2.0, 1.0], [0.0, 3.0]], dtype=np.float32)
    record = onnx_export.compare(expected, expected[:, ::-1].copy())
    assert record["verified"] is False
    assert record["check"]["top1Differs"] == 2
    assert record["reason"] == (
        "top-1 class differs from PyTorch's on 2 of 2 images; max abs difference 3 is over the tolerance 0.001"
    )
