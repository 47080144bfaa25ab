"""On a GPU the host hands the batch over from pinned memory, and the answers stay those of the CPU.

These run only where PyTorch sees a CUDA device; everywhere else they skip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crucible.server.backends import onnxruntime_providers
from crucible.server.repository import load_artifact

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def mixed_parts(shape: tuple[int, int, int]) -> list[np.ndarray]:
    """Two batches of raw pixels around one of normalized floats, as the batcher joins requests."""
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (3, *shape), dtype=np.uint8),
        rng.standard_normal((2, *shape)).astype(np.float32),
        rng.integers(0, 256, (4, *shape), dtype=np.uint8),
    ]


def test_a_gpu_batch_is_copied_from_pinned_memory_and_answers_as_on_the_cpu(digits_artifact: Path):
    on_gpu = load_artifact(digits_artifact, CUDA, backend="torch")
    parts = mixed_parts(on_gpu.image_shape)
    expected = load_artifact(digits_artifact, CPU, backend="torch").predict(parts)
    for _ in range(2):  # the second pass reuses the pinned copies and the device buffer
        np.testing.assert_allclose(on_gpu.predict(parts), expected, atol=1e-4)
    assert on_gpu.backend.input_device.type == "cuda"
    assert set(on_gpu._staging) == {torch.uint8, torch.float32}
    assert all(staging.is_pinned() for staging in on_gpu._staging.values())


def test_onnx_runtime_on_a_gpu_reads_a_pinned_batch_and_answers_as_on_the_cpu(digits_artifact: Path):
    if "CUDAExecutionProvider" not in onnxruntime_providers():
        pytest.skip("this onnxruntime has no CUDA execution provider")
    on_gpu = load_artifact(digits_artifact, CUDA, backend="onnxruntime")
    assert on_gpu.backend.providers[0] in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    parts = mixed_parts(on_gpu.image_shape)
    expected = load_artifact(digits_artifact, CPU, backend="onnxruntime").predict(parts)
    np.testing.assert_allclose(on_gpu.predict(parts), expected, atol=1e-4)
    assert on_gpu._buffer.is_pinned() and not on_gpu._staging
