"""Inference backends: the forward pass of a loaded model, run by PyTorch or by ONNX Runtime, and the
decision of which one serves an artifact.

ONNX Runtime serves only an ONNX copy that the trainer verified against PyTorch at export (see
`crucible.trainer.onnx_export`), and its int8 copy only when the card records a held-out accuracy
drop within the training run's `serve.maxAccuracyDrop`. By default (`auto`) a verified copy is served
by ONNX Runtime, faster than eager PyTorch on CPU; anything else is served by PyTorch, and the
model's metadata says why.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import torch

from crucible.server.artifact import OnnxCopy, OnnxRecord

TORCH, ONNXRUNTIME = "torch", "onnxruntime"
BACKENDS = (TORCH, ONNXRUNTIME)
BACKEND_CHOICES = ("auto", *BACKENDS)
QUANTIZATIONS = ("int8",)
# The model metadata's `platform`, in the words Triton and KServe use.
PLATFORMS = {TORCH: "pytorch", ONNXRUNTIME: "onnxruntime_onnx"}
# ONNX Runtime's execution providers, best first, for a GPU pod; each only where the runtime has it.
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"
# A batch of images, or of their outputs: a torch tensor or a numpy array.
Batch = TypeVar("Batch", torch.Tensor, np.ndarray)


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # torch | onnxruntime
    onnx: OnnxCopy | None = None  # the file ONNX Runtime runs
    quantization: str | None = None  # int8, or None for the float model
    reason: str = ""  # why this backend: shown in /v2/models/{name}


def onnxruntime_providers() -> list[str]:
    """ONNX Runtime's execution providers in this environment; empty when it is not installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def execution_providers(device_type: str, available: list[str]) -> list[str]:
    """The providers a session on `device_type` uses, best first: GPU ones only on a GPU device."""
    wanted = (*GPU_PROVIDERS, CPU_PROVIDER) if device_type == "cuda" else (CPU_PROVIDER,)
    return [provider for provider in wanted if provider in available]


def _why_onnxruntime_cannot_run(device_type: str, providers: list[str]) -> str | None:
    """Why ONNX Runtime cannot serve the float model on `device_type` here; None when it can. On a GPU
    it needs a GPU execution provider: the CPU one alone would leave the GPU idle, where PyTorch
    uses it (the plain `onnxruntime` package has only the CPU provider)."""
    if not execution_providers(device_type, providers):
        return f"onnxruntime is not installed for {device_type}"
    if device_type == "cuda" and not set(GPU_PROVIDERS) & set(providers):
        return "onnxruntime has no GPU execution provider here (" + ", ".join(GPU_PROVIDERS) + ")"
    return None


def _int8_choice(onnx: OnnxRecord, requested: str, runtime: bool) -> BackendChoice:
    prefix = "--quantize int8"
    if requested == TORCH:
        raise ValueError(f"{prefix}: the int8 model runs on the onnxruntime backend, not --backend torch")
    if not runtime:
        raise ValueError(f"{prefix}: onnxruntime is not installed")
    if not onnx.verified:
        raise ValueError(f"{prefix}: the model's ONNX copy is not verified: {onnx.reason}")
    if onnx.int8 is None:
        raise ValueError(
            f"{prefix}: the card records no int8 copy" + (f" ({onnx.int8_reason})" * bool(onnx.int8_reason))
        )
    drop, limit = onnx.int8_accuracy_drop, onnx.max_accuracy_drop
    if drop is None or limit is None:
        raise ValueError(f"{prefix}: the card records no measured held-out accuracy drop of the int8 copy")
    if drop > limit:
        raise ValueError(
            f"{prefix}: the int8 copy loses {drop:.4f} held-out accuracy, over the training run's "
            f"serve.maxAccuracyDrop of {limit:g}; serve the float model instead"
        )
    reason = f"int8 copy, held-out accuracy drop {drop:.4f} within serve.maxAccuracyDrop {limit:g}"
    return BackendChoice(ONNXRUNTIME, onnx.int8, "int8", reason)


def choose_backend(
    onnx: OnnxRecord,
    requested: str = "auto",
    quantize: str | None = None,
    providers: list[str] | None = None,
    device_type: str = "cpu",
) -> BackendChoice:
    """Which backend serves a model whose card says `onnx`, given what the runtime offers
    (`providers`, empty when onnxruntime is missing). ValueError, naming the flag, when what was
    asked for cannot be served."""
    if requested not in BACKEND_CHOICES:
        raise ValueError(f"--backend: {requested!r} is not a backend; allowed: " + ", ".join(BACKEND_CHOICES))
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"--quantize: {quantize!r} is not supported; allowed: " + ", ".join(QUANTIZATIONS))
    providers = onnxruntime_providers() if providers is None else providers
    if quantize == "int8":
        return _int8_choice(onnx, requested, bool(execution_providers(device_type, providers)))
    if requested == TORCH:
        return BackendChoice(TORCH, reason="--backend torch")
    unusable = _why_onnxruntime_cannot_run(device_type, providers)
    if requested == ONNXRUNTIME:
        if unusable:
            raise ValueError(f"--backend onnxruntime: {unusable}; serve with --backend torch")
        if not onnx.verified:
            raise ValueError(f"--backend onnxruntime: the model's ONNX copy is not verified: {onnx.reason}")
        return BackendChoice(ONNXRUNTIME, onnx.model, reason="--backend onnxruntime")
    if not onnx.verified:
        return BackendChoice(TORCH, reason=f"ONNX copy not verified at export: {onnx.reason}")
    if unusable:
        return BackendChoice(TORCH, reason=unusable)
    return BackendChoice(ONNXRUNTIME, onnx.model, reason="ONNX copy verified against PyTorch at export")


class Backend(Protocol):
    name: str
    # Where the model's input batch is assembled.
    input_device: torch.device

    def logits(self, batch: torch.Tensor) -> torch.Tensor: ...


def slice_bounds(rows: int, parts: int) -> list[tuple[int, int]]:
    """`parts` consecutive row ranges covering `rows`, their sizes differing by at most one."""
    size, extra = divmod(rows, parts)
    ends = list(itertools.accumulate(size + (index < extra) for index in range(parts)))
    return list(zip([0, *ends[:-1]], ends, strict=True))


class BatchSlices:
    """A forward pass over a batch on CPUs, as concurrent single-threaded calls on row slices, one per
    thread; both runtimes release the GIL while they compute.

    A runtime's own intra-op threads split every operator instead: for a small network that is
    hundreds of hand-overs per pass, each waking a sleeping thread (idle ones may not spin, or they
    would take the event loop's CPU). Measured on 2 CPUs with a 224-pixel mobilenet, against one call
    with two intra-op threads: ONNX Runtime took 0.85-0.93 ms of wall time per image for batches of 2
    to 32 against 0.97-1.44, and 1.6-1.8 ms of CPU against 1.8-2.6; PyTorch 2.1-2.6 ms against
    4.0-5.3 for batches of 8 and 16, and a lone image 6.2-6.7 ms on one thread against 16 ms on two.
    The outputs are the same bit for bit: each image's rows go through the same kernels."""

    def __init__(self, threads: int, name: str) -> None:
        self.count = max(1, threads)
        # Runs every slice but the first, which the calling thread runs itself.
        self._helpers = (
            ThreadPoolExecutor(self.count - 1, thread_name_prefix=name) if self.count > 1 else None
        )

    def run(
        self, forward: Callable[[Batch], Batch], batch: Batch, join: Callable[[list[Batch]], Batch]
    ) -> Batch:
        parts = min(self.count, len(batch))
        if parts <= 1 or self._helpers is None:
            return forward(batch)
        first, *rest = (batch[start:end] for start, end in slice_bounds(len(batch), parts))
        pending = [self._helpers.submit(forward, part) for part in rest]
        return join([forward(first), *(future.result() for future in pending)])


class TorchBackend:
    name = TORCH

    def __init__(self, module: torch.nn.Module, device: torch.device, threads: int = 1) -> None:
        self.module = module.to(device).eval()
        self.input_device = device
        self.slices = BatchSlices(threads if device.type == "cpu" else 1, "torch")

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        # Inference mode is per thread: each slice's thread enters it.
        with torch.inference_mode():
            return self.module(batch)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self.slices.run(self._forward, batch, torch.cat)


class OnnxRuntimeBackend:
    """One ONNX Runtime session; the batch is assembled in host memory and handed over without a copy.
    On CPUs the session runs single-threaded and `BatchSlices` runs a batch's slices side by side; a
    GPU session keeps its execution provider's own parallelism and runs whole batches."""

    name = ONNXRUNTIME

    def __init__(self, path: Path, threads: int, device_type: str = "cpu") -> None:
        import onnxruntime

        providers = execution_providers(device_type, onnxruntime.get_available_providers())
        on_cpu = providers == [CPU_PROVIDER]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1 if on_cpu else max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Idle workers would spin on the cores the event loop needs (as OMP_WAIT_POLICY=PASSIVE does
        # for PyTorch's).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        self.providers = self.session.get_providers()
        self._input = self.session.get_inputs()[0].name
        self.input_device = torch.device("cpu")
        self.slices = BatchSlices(threads if on_cpu else 1, "onnxruntime")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self._input: batch})[0])

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.slices.run(self._run, batch.numpy(), np.concatenate))
