"""Which backend serves a model, and that ONNX Runtime answers as PyTorch does: a verified ONNX copy is
served by ONNX Runtime by default, anything else by PyTorch, and the model's metadata says which and why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from crucible.server.app import create_app
from crucible.server.artifact import ArtifactError, OnnxCopy, OnnxRecord
from crucible.server.backends import choose_backend, execution_providers, slice_bounds
from crucible.server.repository import ModelRepository, load_artifact
from tests.server.helpers import MODEL_NAME, infer_body, reference_probabilities

CPU = torch.device("cpu")
CPU_ONLY = ["CPUExecutionProvider"]
VERIFIED = OnnxRecord(
    verified=True,
    reason="",
    model=OnnxCopy("model.onnx", "a" * 64),
    int8=OnnxCopy("model.int8.onnx", "b" * 64),
    int8_accuracy_drop=0.004,
    max_accuracy_drop=0.01,
)
FAILED_CHECK = OnnxRecord(verified=False, reason="top-1 class differs from PyTorch's on 2 of 360 images")


@pytest.fixture
def artifact(digits_artifact: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(digits_artifact, tmp_path / "artifact"))


def edit_onnx_record(artifact: Path, **changes) -> None:
    card = json.loads((artifact / "model.json").read_text())
    card["onnx"].update(changes)
    (artifact / "model.json").write_text(json.dumps(card))


def test_auto_serves_a_verified_onnx_copy_with_onnxruntime() -> None:
    choice = choose_backend(VERIFIED, "auto", providers=CPU_ONLY)
    assert (choice.backend, choice.onnx, choice.quantization) == ("onnxruntime", VERIFIED.model, None)


def test_auto_falls_back_to_torch_and_says_why() -> None:
    assert choose_backend(FAILED_CHECK, "auto", providers=CPU_ONLY).reason == (
        "ONNX copy not verified at export: top-1 class differs from PyTorch's on 2 of 360 images"
    )
    without_runtime = choose_backend(VERIFIED, "auto", providers=[])
    assert (without_runtime.backend, without_runtime.reason) == (
        "torch",
        "onnxruntime is not installed for cpu",
    )
    assert choose_backend(OnnxRecord(), "auto", providers=CPU_ONLY).reason == (
        "ONNX copy not verified at export: the card records no ONNX export"
    )


def test_asking_for_onnxruntime_without_a_verified_copy_is_an_error_naming_the_reason() -> None:
    with pytest.raises(
        ValueError, match="--backend onnxruntime: the model's ONNX copy is not verified: top-1"
    ):
        choose_backend(FAILED_CHECK, "onnxruntime", providers=CPU_ONLY)
    with pytest.raises(
        ValueError, match="--backend: 'tensorrt' is not a backend; allowed: auto, torch, onnxruntime"
    ):
        choose_backend(VERIFIED, "tensorrt", providers=CPU_ONLY)


def test_int8_is_served_only_within_the_recorded_accuracy_drop_limit() -> None:
    choice = choose_backend(VERIFIED, "auto", "int8", providers=CPU_ONLY)
    assert (choice.backend, choice.onnx, choice.quantization) == ("onnxruntime", VERIFIED.int8, "int8")
    too_lossy = OnnxRecord(**{**VERIFIED.__dict__, "int8_accuracy_drop": 0.03})
    with pytest.raises(ValueError) as refused:
        choose_backend(too_lossy, "auto", "int8", providers=CPU_ONLY)
    assert str(refused.value) == (
        "--quantize int8: the int8 copy loses 0.0300 held-out accuracy, over the training run's "
        "serve.maxAccuracyDrop of 0.01; serve the float model instead"
    )
    unmeasured = OnnxRecord(**{**VERIFIED.__dict__, "int8_accuracy_drop": None})
    with pytest.raises(ValueError, match="no measured held-out accuracy drop"):
        choose_backend(unmeasured, "auto", "int8", providers=CPU_ONLY)
    with pytest.raises(
        ValueError, match="the int8 model runs on the onnxruntime backend, not --backend torch"
    ):
        choose_backend(VERIFIED, "torch", "int8", providers=CPU_ONLY)


def test_on_a_gpu_onnxruntime_serves_only_with_a_gpu_execution_provider() -> None:
    with_cuda = choose_backend(
        VERIFIED, "auto", providers=["CUDAExecutionProvider", *CPU_ONLY], device_type="cuda"
    )
    assert (with_cuda.backend, with_cuda.onnx) == ("onnxruntime", VERIFIED.model)
    # The plain onnxruntime package: its CPU provider would leave the GPU idle, PyTorch uses it.
    cpu_package = choose_backend(VERIFIED, "auto", providers=CPU_ONLY, device_type="cuda")
    assert (cpu_package.backend, cpu_package.reason) == (
        "torch",
        "onnxruntime has no GPU execution provider here (TensorrtExecutionProvider, CUDAExecutionProvider)",
    )
    with pytest.raises(ValueError) as refused:
        choose_backend(VERIFIED, "onnxruntime", providers=CPU_ONLY, device_type="cuda")
    assert str(refused.value) == (
        "--backend onnxruntime: onnxruntime has no GPU execution provider here "
        "(TensorrtExecutionProvider, CUDAExecutionProvider); serve with --backend torch"
    )


def test_gpu_execution_providers_are_used_only_where_present() -> None:
    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert execution_providers("cuda", everything) == everything
    assert execution_providers("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert execution_providers("cpu", everything) == ["CPUExecutionProvider"]


def test_onnxruntime_answers_as_pytorch_does_on_the_digits_model(digits_artifact: Path, digit_pixels) -> None:
    pixels, _ = digit_pixels
    onnx = load_artifact(digits_artifact, CPU, backend="onnxruntime")
    eager = load_artifact(digits_artifact, CPU, backend="torch")
    assert (onnx.backend.name, eager.backend.name) == ("onnxruntime", "torch")
    from_onnx, from_torch = onnx.predict([pixels]), eager.predict([pixels])
    assert (from_onnx.argmax(axis=1) == from_torch.argmax(axis=1)).all()
    assert np.abs(from_onnx - from_torch).max() <= 1e-5
    np.testing.assert_allclose(from_onnx, reference_probabilities(digits_artifact, pixels), atol=1e-5)
    # Batches of other sizes, one after another, through the reused input buffer.
    for size in (1, 7, 3):
        np.testing.assert_allclose(onnx.predict([pixels[:size]]), from_torch[:size], atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_on_several_cpus_a_batch_is_split_into_concurrent_runs_that_answer_as_one_run(
    digits_artifact: Path, digit_pixels, backend: str
) -> None:
    pixels, _ = digit_pixels
    whole = load_artifact(digits_artifact, CPU, backend=backend)
    split = load_artifact(digits_artifact, CPU, backend=backend, threads=3)
    assert (whole.backend.slices.count, split.backend.slices.count) == (1, 3)
    for size in (1, 2, 3, 7):  # fewer images than threads, as many, and more
        np.testing.assert_allclose(split.predict([pixels[:size]]), whole.predict([pixels[:size]]), atol=1e-6)


def test_slices_cover_the_batch_in_order_and_differ_by_at_most_one_row() -> None:
    assert slice_bounds(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert slice_bounds(2, 2) == [(0, 1), (1, 2)]
    assert slice_bounds(32, 2) == [(0, 16), (16, 32)]


def test_a_model_whose_onnx_check_failed_is_served_with_torch_and_says_so(
    artifact: Path, digit_pixels
) -> None:
    edit_onnx_record(artifact, verified=False, reason="max abs difference 0.02 is over the tolerance 0.001")
    model = load_artifact(artifact, CPU)
    model.warm_up()
    with TestClient(create_app(ModelRepository([model]))) as client:
        metadata = client.get(f"/v2/models/{MODEL_NAME}").json()
        infer = client.post(f"/v2/models/{MODEL_NAME}/infer", json=infer_body(digit_pixels[0][:2]))
    assert metadata["platform"] == "pytorch"
    assert metadata["parameters"]["backend"] == {
        "name": "torch",
        "quantization": None,
        "reason": "ONNX copy not verified at export: max abs difference 0.02 is over the tolerance 0.001",
    }
    assert infer.status_code == 200


def test_the_default_backend_for_a_verified_model_shows_in_its_metadata(client) -> None:
    metadata = client.get(f"/v2/models/{MODEL_NAME}").json()
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["parameters"]["backend"] == {
        "name": "onnxruntime",
        "quantization": None,
        "reason": "ONNX copy verified against PyTorch at export",
    }


def test_a_tampered_onnx_file_is_refused(artifact: Path) -> None:
    (artifact / "model.onnx").write_bytes((artifact / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match=r"checksum mismatch for .*model\.onnx: model\.json says sha256"):
        load_artifact(artifact, CPU)
    assert load_artifact(artifact, CPU, backend="torch").backend.name == "torch"  # the weights still serve


def test_the_int8_copy_serves_when_its_drop_is_within_the_limit(artifact: Path, digit_pixels) -> None:
    edit_onnx_record(artifact, int8={**_card(artifact)["onnx"]["int8"], "accuracyDrop": 0.0})
    model = load_artifact(artifact, CPU, quantize="int8")
    assert (model.backend.name, model.quantization) == ("onnxruntime", "int8")
    pixels, labels = digit_pixels
    assert (model.predict([pixels]).argmax(axis=1) == labels).mean() >= 0.8
    edit_onnx_record(artifact, int8={**_card(artifact)["onnx"]["int8"], "accuracyDrop": 0.2})
    with pytest.raises(ValueError, match=r"loses 0\.2000 held-out accuracy, over the training run's"):
        load_artifact(artifact, CPU, quantize="int8")


def _card(artifact: Path) -> dict:
    return json.loads((artifact / "model.json").read_text())
