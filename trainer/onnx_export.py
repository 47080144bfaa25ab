"""The ONNX copy of a trained model, checked against PyTorch before any server may use it.

At export the network is written as `model.onnx` (opset pinned, the batch axis dynamic) and run with
ONNX Runtime on the held-out images: it is marked verified only when its logits equal PyTorch's
within `TOLERANCE` and its top-1 class is the same on every image. A dynamically quantized
int8 copy (`model.int8.onnx`) is measured the same way, and its held-out accuracy drop recorded, so
that a server can refuse it when the drop is over the run's `serve.maxAccuracyDrop`.

Nothing here may fail a run: without onnx or onnxruntime installed, or when the export or the check
fails, the card says "not verified" and why, and servers use the PyTorch weights.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crucible.checksums import sha256_of
from crucible.resources import available_cpus

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
# Pinned so that an artifact means the same graph whichever torch wrote it; ONNX Runtime since 1.12
# runs it, and every layer of the supported architectures has an opset-17 form.
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# Largest difference allowed between ONNX Runtime's and PyTorch's logits on the held-out images:
# float32 kernels that add in a different order differ by about 1e-5 on logits of a trained model.
# Probabilities, what a server answers, then differ by at most half as much.
TOLERANCE = 1e-3
# Held-out images per ONNX Runtime call while checking (bounds the memory of large images).
CHECK_BATCH = 64

log = logging.getLogger(__name__)


def write_onnx(model: nn.Module, path: Path, image_shape: tuple[int, int, int]) -> None:
    """The eval-mode network as ONNX: input `input` float32 [N, C, H, W] normalized, output `logits`."""
    # A copy on the CPU: the caller's model stays where it is, and the graph has no device in it.
    network = copy.deepcopy(model).cpu().eval()
    example = torch.zeros((2, *image_shape), dtype=torch.float32)
    with warnings.catch_warnings():
        # The TorchScript-based exporter: mature for these CNNs and needs no extra package.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )


def onnx_logits(path: Path, images: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Logits of the ONNX model at `path` for normalized images [N, C, H, W]."""
    session = _session(path, threads)
    parts = [
        session.run(None, {INPUT_NAME: images[start : start + CHECK_BATCH]})[0]
        for start in range(0, len(images), CHECK_BATCH)
    ]
    return np.concatenate(parts)


def torch_logits(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    model.eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(images), CHECK_BATCH):
            parts.append(model(images[start : start + CHECK_BATCH]).float().cpu().numpy())
    return np.concatenate(parts)


def compare(expected: np.ndarray, actual: np.ndarray, tolerance: float = TOLERANCE) -> dict:
    """The check's record: max abs difference of the logits, top-1 disagreements, verdict."""
    max_abs_diff = float(np.abs(expected - actual).max()) if expected.size else 0.0
    top1_differs = int((expected.argmax(axis=1) != actual.argmax(axis=1)).sum())
    check = {
        "images": len(expected),
        "compared": "logits",
        "maxAbsDiff": max_abs_diff,
        "tolerance": tolerance,
        "top1Differs": top1_differs,
    }
    reasons = []
    if top1_differs:
        reasons.append(f"top-1 class differs from PyTorch's on {top1_differs} of {len(expected)} images")
    if not max_abs_diff <= tolerance:
        reasons.append(f"max abs difference {max_abs_diff:.3g} is over the tolerance {tolerance:g}")
    if not len(expected):
        reasons.append("no held-out images to check against")
    return {"verified": not reasons, "check": check} | ({"reason": "; ".join(reasons)} if reasons else {})


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean()) if len(labels) else 0.0


def _session(path: Path, threads: int | None = None):  # -> onnxruntime.InferenceSession
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # As many threads as the CPU quota allows: ONNX Runtime's default counts the host's cores.
    options.intra_op_num_threads = threads or available_cpus()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def batches_of(
    images: torch.Tensor, labels: torch.Tensor, size: int = CHECK_BATCH
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Held-out images already in memory, as the batches `export_checked` reads."""
    return [
        (images[start : start + size], labels[start : start + size]) for start in range(0, len(images), size)
    ]


def _quantized(
    source: Path,
    output_dir: Path,
    held_out: Iterable[tuple[torch.Tensor, torch.Tensor]],
    labels: np.ndarray,
    fp32_accuracy: float,
) -> dict:
    """Dynamic int8 quantization of the verified model and its measured held-out accuracy drop."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = output_dir / INT8_FILE
    with tempfile.TemporaryDirectory() as scratch:
        # Shape inference first, as ONNX Runtime's quantizer advises; in a scratch folder.
        from onnxruntime.quantization.shape_inference import quant_pre_process

        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        # Unsigned weights: ONNX Runtime's CPU ConvInteger kernel takes uint8 weights only.
        quantize_dynamic(str(prepared), str(path), weight_type=QuantType.QUInt8)
    session = _session(path)
    logits = [session.run(None, {INPUT_NAME: _numpy(x)})[0] for x, _ in held_out]
    accuracy = _accuracy(np.concatenate(logits) if logits else np.zeros((0, 1)), labels)
    return {
        "file": INT8_FILE,
        "sha256": sha256_of(path),
        "method": "dynamic",
        "heldOutAccuracy": accuracy,
        "accuracyDrop": fp32_accuracy - accuracy,
    }


def _numpy(images: torch.Tensor) -> np.ndarray:
    return images.detach().float().cpu().numpy()


def _both_logits(
    model: nn.Module, path: Path, held_out: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(PyTorch's logits, ONNX Runtime's logits, labels) batch by batch: only logits are kept, never
    the held-out images themselves (photos at 224 px would not fit)."""
    session = _session(path)
    model.eval()
    with torch.inference_mode():
        for images, labels in held_out:
            expected = model(images).float().cpu().numpy()
            actual = session.run(None, {INPUT_NAME: _numpy(images)})[0]
            yield expected, actual, labels.detach().cpu().numpy()


def export_checked(
    model: nn.Module,
    output_dir: Path,
    held_out: Iterable[tuple[torch.Tensor, torch.Tensor]],
    max_accuracy_drop: float,
) -> dict:
    """Write and check `model.onnx` (and its int8 copy) beside the weights: the card's `onnx` section.
    `held_out` gives normalized image batches and their labels, and is read twice (a Feed, or
    `batches_of` tensors in memory). Never raises: what went wrong is recorded as the reason it is not
    verified."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return {"onnx": {"verified": False, "reason": "onnxruntime is not installed where the model trained"}}
    path = output_dir / ONNX_FILE
    record: dict = {"file": ONNX_FILE, "opset": OPSET, "input": INPUT_NAME, "output": OUTPUT_NAME}
    try:
        first = next(iter(held_out), None)
        if first is None:
            return {"onnx": {"verified": False, **compare(np.zeros((0, 1)), np.zeros((0, 1)))}}
        write_onnx(model, path, tuple(first[0].shape[1:]))
        record["sha256"] = sha256_of(path)
        parts = list(_both_logits(model, path, held_out))
        expected, actual, truth = (np.concatenate([part[i] for part in parts]) for i in range(3))
        record |= compare(expected, actual)
    except Exception as error:  # the exporter and the runtime raise many kinds; any one means "not verified"
        log.warning("ONNX export failed: %s", error)
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        return {"onnx": {"verified": False, "reason": f"export failed: {type(error).__name__}: {error}"}}
    if not record["verified"]:
        return {"onnx": record}
    try:
        int8 = _quantized(path, output_dir, held_out, truth, _accuracy(actual, truth))
        int8["maxAccuracyDrop"] = max_accuracy_drop
        int8["allowed"] = int8["accuracyDrop"] <= max_accuracy_drop
    except Exception as error:  # quantization is optional; the fp32 model stays verified
        log.warning("int8 quantization failed: %s", error)
        int8 = {"allowed": False, "reason": f"quantization failed: {type(error).__name__}: {error}"}
    record["int8"] = int8
    return {"onnx": record}
