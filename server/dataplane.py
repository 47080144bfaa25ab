"""The data plane: decode, batch, infer, encode. It knows nothing of HTTP: bytes and names in,
bytes and dicts out, domain errors raised."""

from __future__ import annotations

import asyncio

import numpy as np

import crucible
from crucible.server import codec
from crucible.server.backends import PLATFORMS
from crucible.server.batching import DynamicBatcher
from crucible.server.errors import InvalidInput, ModelNotReady, PayloadTooLarge
from crucible.server.images import decode_images
from crucible.server.metrics import ServerMetrics
from crucible.server.repository import Model, ModelRepository
from crucible.server.settings import ServerSettings

SERVER_NAME = "crucible"
EXTENSIONS = ["binary_tensor_data"]


class DataPlane:
    def __init__(self, repository: ModelRepository, settings: ServerSettings, metrics: ServerMetrics) -> None:
        self.repository = repository
        self.settings = settings
        self.metrics = metrics
        self._batchers: dict[str, DynamicBatcher] = {}
        for model in repository.models():
            card = model.card
            metrics.model_info.labels(model.name, model.version, card.architecture, card.sha256).set(1)

    async def start(self) -> None:
        """Start one inference worker per model (on the running event loop)."""
        for model in self.repository.models():
            batcher = DynamicBatcher(
                model.name,
                model.predict,
                self.settings.max_batch_size,
                self.settings.max_batch_delay_ms / 1000,
                on_batch=lambda size, seconds, name=model.name: self.metrics.observe_batch(
                    name, size, seconds
                ),
                on_queue_depth=self.metrics.queue_depth.labels(model.name).set,
                max_queue_images=self.settings.max_queue_images,
            )
            await batcher.start()
            self._batchers[model.name] = batcher

    async def stop(self) -> None:
        """Finish every queued request, then stop the workers."""
        await asyncio.gather(*(batcher.stop() for batcher in self._batchers.values()))
        self._batchers.clear()

    def model_ready(self, name: str, version: str | None = None) -> bool:
        model = self.repository.get(name, version)
        batcher = self._batchers.get(model.name)
        return model.ready and batcher is not None and batcher.running

    def ready(self) -> bool:
        models = self.repository.models()
        return bool(models) and all(self.model_ready(model.name) for model in models)

    def server_metadata(self) -> dict:
        return {"name": SERVER_NAME, "version": crucible.__version__, "extensions": EXTENSIONS}

    def model_metadata(self, name: str, version: str | None = None) -> dict:
        model = self.repository.get(name, version)
        card = model.card
        return {
            "name": model.name,
            "versions": [model.version],
            "platform": PLATFORMS[model.backend.name],
            "inputs": [{"name": codec.INPUT_NAME, "datatype": "FP32", "shape": [-1, *model.image_shape]}],
            "outputs": [
                {"name": codec.PROBABILITIES, "datatype": "FP32", "shape": [-1, len(model.classes)]},
                {"name": codec.LABELS, "datatype": "BYTES", "shape": [-1]},
            ],
            "parameters": {
                "input_datatypes": list(codec.DATATYPES),
                "architecture": card.architecture,
                "classes": model.classes,
                "normalization": {"mean": list(card.mean), "std": list(card.std), "scale": "pixels / 255"},
                # How /predict resizes an upload; UINT8 tensors must arrive resized the same way.
                "resize": card.resize,
                "sha256": card.sha256,
                "backend": {
                    "name": model.backend.name,
                    "quantization": model.quantization,
                    "reason": model.backend_reason,
                },
            },
        }

    def _ready_model(self, name: str, version: str | None) -> tuple[Model, DynamicBatcher]:
        model = self.repository.get_ready(name, version)
        batcher = self._batchers.get(model.name)
        if batcher is None or not batcher.running:
            raise ModelNotReady(model.name)
        return model, batcher

    async def infer(
        self, name: str, version: str | None, body: bytes, binary_header: str | None = None
    ) -> tuple[bytes, int | None]:
        """An Open Inference Protocol infer request in; its response out, and the length of the JSON
        header when binary outputs follow it (`codec.encode_infer_response`)."""
        model, batcher = self._ready_model(name, version)
        request = codec.decode_infer_request(body, model.image_shape, self.settings.max_images, binary_header)
        probabilities = await batcher.submit(request.images)
        return codec.encode_infer_response(model.name, model.version, request, probabilities, model.classes)

    async def predict_images(
        self, files: list[tuple[str, bytes]], top_k: int | None = None, name: str | None = None
    ) -> dict:
        """Uploaded image files (name, bytes) -> the top-k labels of each, best first."""
        model, batcher = self._ready_model(name or self.repository.default().name, None)
        if not files:
            raise InvalidInput("files: upload at least one PNG or JPEG image (multipart field `files`)")
        if len(files) > self.settings.max_images:
            raise PayloadTooLarge(
                f"files: {len(files)} images in one request; the limit is {self.settings.max_images}"
            )
        k = min(top_k or self.settings.default_top_k, len(model.classes))
        # Decoding a large JPEG takes milliseconds: off the event loop.
        images = await asyncio.to_thread(decode_images, files, model.image_shape[1:], model.card.resize)
        probabilities = await batcher.submit(images)
        return {
            "model_name": model.name,
            "model_version": model.version,
            "predictions": [
                _top_k(filename, row, model.classes, k)
                for (filename, _), row in zip(files, probabilities, strict=True)
            ],
        }


def _top_k(filename: str, probabilities: np.ndarray, classes: list[str], k: int) -> dict:
    best = np.argsort(-probabilities, kind="stable")[:k]
    top = [{"label": classes[i], "score": float(probabilities[i])} for i in best]
    return {"file": filename, "label": top[0]["label"], "score": top[0]["score"], "top_k": top}
