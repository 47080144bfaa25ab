"""The model repository: load a verified artifact, warm it up, say when it is ready, find it by name."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from crucible.server.artifact import (
    CARD_FILE,
    ArtifactError,
    ModelCard,
    VerifiedArtifact,
    verify_artifact,
    verify_onnx,
)
from crucible.server.backends import ONNXRUNTIME, Backend, OnnxRuntimeBackend, TorchBackend, choose_backend
from crucible.server.calibration import Calibration, calibrate
from crucible.server.errors import ModelNotFound, ModelNotReady

log = logging.getLogger(__name__)


class Model:
    """A loaded classifier: batches of images in, class probabilities out. Not thread-safe: one
    inference worker calls `predict`."""

    def __init__(
        self,
        name: str,
        card: ModelCard,
        module: torch.nn.Module,
        device: torch.device,
        backend: Backend | None = None,
        backend_reason: str = "",
        quantization: str | None = None,
    ) -> None:
        self.name = name
        self.card = card
        self.version = card.sha256[:12]
        self.device = device
        self.module = module.to(device).eval()
        self.backend = backend or TorchBackend(self.module, device)
        self.backend_reason = backend_reason
        self.quantization = quantization
        self.ready = False
        # The batch sizes start-up measured and the one it chose (None: not calibrated).
        self.calibration: Calibration | None = None
        input_device = self.backend.input_device
        # (pixels / 255 - mean) / std as one multiply and one add per value.
        std = torch.tensor(card.std, dtype=torch.float32, device=input_device).view(1, 3, 1, 1)
        mean = torch.tensor(card.mean, dtype=torch.float32, device=input_device).view(1, 3, 1, 1)
        self._scale = 1 / (255 * std)
        self._shift = -mean / std
        self._host_scale, self._host_shift = self._scale.cpu().numpy(), self._shift.cpu().numpy()
        # The input batch, reused from one forward pass to the next (grown when a larger one comes).
        self._buffer = self._empty(0, torch.float32, input_device)
        # Pinned host copies of the parts, by dtype, when the batch is assembled on the GPU.
        self._staging: dict[torch.dtype, torch.Tensor] = {}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.card.image_shape

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    def _model_input(self, parts: list[np.ndarray]) -> torch.Tensor:
        """One float32 batch where the backend reads it: UINT8 parts scaled and normalized as in
        training (`(pixels / 255 - mean) / std`), FP32 parts taken as already normalized. Each part is
        written once into the reused batch buffer (on a GPU, after a copy into pinned host memory)."""
        total = sum(len(part) for part in parts)
        if total > len(self._buffer):
            self._buffer = self._empty(total, torch.float32, self._buffer.device)
        batch = self._buffer[:total]
        if batch.device.type == "cpu":
            _assemble_on_host(parts, batch.numpy(), self._host_scale, self._host_shift)
            return batch
        offset = 0
        for part in parts:
            rows = batch[offset : offset + len(part)]
            # Pixels travel to the device as uint8: a quarter of the bytes of float32.
            rows.copy_(self._host_part(part, offset), non_blocking=True)
            if part.dtype == np.uint8:
                rows.mul_(self._scale).add_(self._shift)
            offset += len(part)
        return batch

    def _host_part(self, part: np.ndarray, offset: int) -> torch.Tensor:
        """The part as a pinned host copy at the same rows, for the GPU batch to copy from. The staging
        rows of one batch never overlap, and `predict` waits for the device before it returns, so the
        next batch cannot overwrite a copy in flight."""
        host = torch.from_numpy(part)
        end = offset + len(part)
        staging = self._staging.get(host.dtype)
        if staging is None or end > len(staging):
            staging = self._staging[host.dtype] = self._empty(end, host.dtype, torch.device("cpu"))
        rows = staging[offset:end]
        rows.copy_(host)
        return rows

    def _empty(self, rows: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """An uninitialised [rows, *image_shape] tensor; pinned when it is host memory a GPU reads."""
        # Page-locked host memory: the copy to the device is then a DMA that needs no staging by the
        # driver, and can run asynchronously.
        pin = self.device.type == "cuda" and device.type == "cpu"
        return torch.empty((rows, *self.image_shape), dtype=dtype, device=device, pin_memory=pin)

    def predict(self, parts: list[np.ndarray]) -> np.ndarray:
        """Probabilities float32 [N, C] for the images of every part, in order, in one forward pass."""
        with torch.inference_mode():
            logits = self.backend.logits(self._model_input(parts))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Run the batch sizes the server will see first, so no client pays for lazy initialisation."""
        for size in batch_sizes:
            self._predict_blank(size)
        self.ready = True

    def calibrate_batch_size(self, max_batch_size: int) -> Calibration:
        """Warm up at every candidate batch size up to `max_batch_size`, timing each, and keep the
        largest batch this model should be served at (`calibration.calibrate`)."""
        # On an accelerator the CPU mostly waits: wall time is the cost.
        clock = time.process_time if self.device.type == "cpu" else time.perf_counter
        self.calibration = calibrate(self._predict_blank, max_batch_size, clock=clock)
        self.ready = True
        return self.calibration

    def _predict_blank(self, size: int) -> None:
        """One forward pass over `size` black images: warm-up and timing, not answers."""
        self.predict([np.zeros((size, *self.image_shape), dtype=np.uint8)])


def _assemble_on_host(
    parts: list[np.ndarray], batch: np.ndarray, scale: np.ndarray, shift: np.ndarray
) -> None:
    """Write the parts into a host batch, UINT8 ones scaled and shifted; with numpy, whose loops run on
    the calling thread. PyTorch splits an operation over 150,528 values (one 224x224 image) across
    its intra-op threads: on a server with two CPUs, waking the second thread for each of the three
    passes cost about 140 microseconds of CPU per one-image request, six times the work itself."""
    offset = 0
    for part in parts:
        rows = batch[offset : offset + len(part)]
        if part.dtype == np.uint8:
            np.multiply(part, scale, out=rows)
            np.add(rows, shift, out=rows)
        else:
            np.copyto(rows, part)
        offset += len(part)


def load_verified(
    artifact: VerifiedArtifact,
    device: torch.device,
    name: str | None = None,
    backend: str = "auto",
    quantize: str | None = None,
    threads: int = 1,
) -> Model:
    """Build the network of a verified artifact and load its weights, on the backend `choose_backend`
    picks, running each batch on `threads` CPU threads; ArtifactError when they do not fit, ValueError
    when the backend asked for cannot serve it."""
    from crucible.trainer.models import build_model

    card = artifact.card
    choice = choose_backend(card.onnx, backend, quantize, device_type=device.type)
    try:
        module = build_model(card.architecture, len(card.classes), card.dropout)
    except ValueError as error:
        raise ArtifactError(f"{artifact.directory / CARD_FILE}: {error}") from None
    try:
        state = torch.load(artifact.weights, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except Exception as error:  # torch raises many kinds for a bad file; all mean the same here
        raise ArtifactError(f"cannot load weights {artifact.weights}: {error}") from None
    runner: Backend
    if choice.backend == ONNXRUNTIME:
        assert choice.onnx is not None
        path = verify_onnx(artifact.directory, choice.onnx)
        try:
            runner = OnnxRuntimeBackend(path, threads, device.type)
        except Exception as error:  # onnxruntime raises its own kinds for a file it cannot load
            raise ArtifactError(f"cannot load {path} with onnxruntime: {error}") from None
    else:
        runner = TorchBackend(module, device, threads)
    log.info(
        "loaded %s (%s, %d classes) from %s; backend %s (%s)",
        name or card.name,
        card.architecture,
        len(card.classes),
        artifact.directory,
        choice.backend + (f" {choice.quantization}" if choice.quantization else ""),
        choice.reason,
    )
    return Model(name or card.name, card, module, device, runner, choice.reason, choice.quantization)


def load_artifact(
    directory: Path,
    device: torch.device,
    name: str | None = None,
    backend: str = "auto",
    quantize: str | None = None,
    threads: int = 1,
) -> Model:
    """Verify and load an artifact directory; ArtifactError with a message a person can act on."""
    return load_verified(verify_artifact(directory), device, name, backend, quantize, threads)


def configure_threads(threads: int, device: torch.device) -> None:
    """PyTorch's intra-op threads, for a server with `threads` CPUs (the caller sizes them from the
    real CPU limit). On CPUs one: the backends run a batch's slices on threads of their own
    (`backends.BatchSlices`), each single-threaded. On a GPU the CPU threads only feed the device."""
    torch.set_num_threads(1 if device.type == "cpu" else max(1, threads))


class ModelRepository:
    """The models this server serves, by name."""

    def __init__(self, models: list[Model] | None = None) -> None:
        self._models: dict[str, Model] = {}
        for model in models or []:
            self.add(model)

    def add(self, model: Model) -> None:
        if model.name in self._models:
            raise ValueError(f"a model named {model.name!r} is already served")
        self._models[model.name] = model

    def models(self) -> list[Model]:
        return list(self._models.values())

    def default(self) -> Model:
        if not self._models:
            raise ModelNotFound("(none)")
        return next(iter(self._models.values()))

    def get(self, name: str, version: str | None = None) -> Model:
        model = self._models.get(name)
        if model is None or (version is not None and version != model.version):
            raise ModelNotFound(name, version)
        return model

    def get_ready(self, name: str, version: str | None = None) -> Model:
        model = self.get(name, version)
        if not model.ready:
            raise ModelNotReady(name)
        return model
