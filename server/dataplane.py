"""The data plane: decode, batch, infer, encode. It knows nothing of HTTP: bytes and names in,
bytes and dicts out, domain errors raised."""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np

import crucible
from crucible.server import codec, labels
from crucible.server.backends import PLATFORMS
from crucible.server.batching import DynamicBatcher
from crucible.server.capture import Capture, Item, ModelIdentity, ranked_classes
from crucible.server.capture_store import CaptureStore, CaptureStoreError, open_store
from crucible.server.drift import DriftWindow
from crucible.server.errors import (
    CaptureOff,
    CaptureStorageFailed,
    InvalidInput,
    ModelNotReady,
    NotCaptured,
    PayloadTooLarge,
    UnknownClass,
)
from crucible.server.images import decode_images
from crucible.server.metrics import ServerMetrics
from crucible.server.repository import Model, ModelRepository
from crucible.server.settings import ServerSettings

SERVER_NAME = "crucible"
EXTENSIONS = ["binary_tensor_data"]
# How long feedback waits for this server's own queued capture of the id to be written.
FEEDBACK_WAIT_SECONDS = 10.0


def new_request_id() -> str:
    return uuid.uuid4().hex


class DataPlane:
    def __init__(
        self,
        repository: ModelRepository,
        settings: ServerSettings,
        metrics: ServerMetrics,
        capture_store: CaptureStore | None = None,
    ) -> None:
        """`capture_store` replaces the store `settings.capture.destination` names (tests, benchmarks)."""
        self.repository = repository
        self.settings = settings
        self.metrics = metrics
        self._batchers: dict[str, DynamicBatcher] = {}
        self.drift: dict[str, DriftWindow] = {}
        for model in repository.models():
            card = model.card
            metrics.model_info.labels(model.name, model.version, card.architecture, card.sha256).set(1)
            self.drift[model.name] = DriftWindow(model.classes, card.class_counts, settings.drift_window)
        metrics.before_render.append(self._export_drift)
        self.capture: Capture | None = None
        if settings.capture.enabled:
            store = capture_store or open_store(settings.capture.destination or "")
            self.capture = Capture(
                store,
                settings.capture,
                [_identity(model) for model in repository.models()],
                on_write=lambda model, outcome: metrics.capture_writes.labels(model, outcome).inc(),
                on_drop=lambda model, reason: metrics.capture_dropped.labels(model, reason).inc(),
            )

    async def start(self) -> None:
        """Start one inference worker per model (on the running event loop)."""
        for model in self.repository.models():
            batcher = DynamicBatcher(
                model.name,
                model.predict,
                self._max_batch_size(model),
                self.settings.max_batch_delay_ms / 1000,
                on_batch=lambda size, seconds, name=model.name: self.metrics.observe_batch(
                    name, size, seconds
                ),
                on_queue_depth=self.metrics.queue_depth.labels(model.name).set,
                max_queue_images=self.settings.max_queue_images,
                one_cpu=self.settings.cpus == 1,
            )
            await batcher.start()
            self._batchers[model.name] = batcher
        if self.capture is not None:
            self.capture.start()

    def _max_batch_size(self, model: Model) -> int:
        """The configured maximum, or the smaller one start-up calibration chose for this model."""
        if model.calibration is None:
            return self.settings.max_batch_size
        return min(self.settings.max_batch_size, model.calibration.max_batch_size)

    async def stop(self) -> None:
        """Finish every queued request, then stop the workers, then write what capture has queued."""
        await asyncio.gather(*(batcher.stop() for batcher in self._batchers.values()))
        self._batchers.clear()
        if self.capture is not None:
            await asyncio.to_thread(self.capture.stop)

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
                "batching": self._batching(model),
            },
        }

    def _batching(self, model: Model) -> dict:
        calibration = model.calibration
        return {
            "max_batch_size": self._max_batch_size(model),
            "calibrated": calibration is not None and not calibration.kept_because,
            # What start-up measured: milliseconds per image by batch size.
            "ms_per_image": {
                str(size): round(1000 * seconds, 3)
                for size, seconds in (calibration.seconds_per_image if calibration else {}).items()
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
    ) -> tuple[bytes, int | None, str]:
        """An Open Inference Protocol infer request in; its response out, the length of the JSON
        header when binary outputs follow it (`codec.encode_infer_response`), and the request id."""
        model, batcher = self._ready_model(name, version)
        request = codec.decode_infer_request(body, model.image_shape, self.settings.max_images, binary_header)
        probabilities = await batcher.submit(request.images)
        self.drift[model.name].add(probabilities)
        # The client's id is echoed in the body (the protocol says so); it names the capture too when
        # it is a safe file name, else a fresh id does (returned in X-Request-Id).
        client_id = request.id
        request_id = (
            client_id if client_id is not None and labels.is_request_id(client_id) else new_request_id()
        )
        if self.capture is not None and self.capture.admit(model.name, time.time()):
            self._capture_tensors(model, request_id, request.images, probabilities)
        body, json_length = codec.encode_infer_response(
            model.name, model.version, request, probabilities, model.classes, request_id
        )
        return body, json_length, request_id

    def _capture_tensors(self, model: Model, request_id: str, images: np.ndarray, probabilities) -> None:
        """Each image of an infer request: the request's id for one image, `<id>-<i>` for image i of
        several."""
        assert self.capture is not None
        identity, now, k = self.capture.models_by_name[model.name], time.time(), self.settings.default_top_k
        for index, (image, row) in enumerate(zip(images, probabilities, strict=True)):
            item_id = request_id if len(images) == 1 else f"{request_id}-{index}"
            prediction = ranked_classes(row, model.classes, k)
            self.capture.offer(Item(item_id, identity, prediction, now, tensor=image))

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
        size, policy = model.image_shape[1:], model.card.resize
        if self.settings.cpus == 1:
            images = decode_images(files, size, policy)  # see ServerSettings.cpus
        else:
            # Decoding a large JPEG takes milliseconds: off the event loop, beside the forward pass.
            images = await asyncio.to_thread(decode_images, files, size, policy)
        probabilities = await batcher.submit(images)
        self.drift[model.name].add(probabilities)
        predictions = []
        now = time.time()
        for (filename, data), row in zip(files, probabilities, strict=True):
            request_id = new_request_id()
            top = ranked_classes(row, model.classes, k)
            predictions.append(
                {
                    "id": request_id,
                    "file": filename,
                    "label": top[0]["label"],
                    "score": top[0]["score"],
                    "top_k": top,
                }
            )
            if self.capture is not None and self.capture.admit(model.name, now):
                identity = self.capture.models_by_name[model.name]
                prediction = ranked_classes(row, model.classes, max(k, self.settings.default_top_k))
                self.capture.offer(Item(request_id, identity, prediction, now, upload=data))
        return {"model_name": model.name, "model_version": model.version, "predictions": predictions}

    # Labels and the drift signal

    def _capturing(self, name: str) -> tuple[Model, Capture]:
        model = self.repository.get(name)
        if self.capture is None:
            raise CaptureOff(
                "capture is off on this server: start it with --capture DEST (a ModelDeployment's "
                "spec.capture.sampleRate above 0)"
            )
        return model, self.capture

    async def feedback(self, name: str, request_id: object, label: object) -> dict:
        """Attach `label` to the captured request `request_id` (labels/<id>.json and the
        labelled/<label>/<id>.png view)."""
        model, capture = self._capturing(name)
        if not isinstance(request_id, str) or not request_id:
            raise InvalidInput("id: expected the request id a prediction answered with (a string)")
        if not isinstance(label, str):
            raise InvalidInput("label: expected a class name (a string)")
        if label not in model.classes:
            raise UnknownClass(
                f"label {label!r} is not one of the model's classes: {', '.join(model.classes)}"
            )
        if not labels.is_request_id(request_id):
            raise NotCaptured(f"id {request_id!r} was not captured: request ids are letters, digits, - and _")
        # The capture may still be on this server's queue: a client labels right after predicting.
        await asyncio.to_thread(capture.wait_written, request_id, FEEDBACK_WAIT_SECONDS)
        try:
            await asyncio.to_thread(
                labels.attach_label, capture.store, request_id, label, model.classes, "api"
            )
        except labels.UnknownRequest:
            raise NotCaptured(
                f"id {request_id!r} was not captured (sample rate {capture.settings.sample_rate:g}: "
                "only that share of requests is stored)"
            ) from None
        except CaptureStoreError as error:
            raise CaptureStorageFailed(str(error)) from None
        return {"id": request_id, "label": label}

    async def capture_status(self, name: str) -> dict:
        """What the capture destination holds (every replica's captures) and this server's drift."""
        model = self.repository.get(name)
        drift = self.drift[model.name].snapshot().to_dict()
        if self.capture is None:
            return {
                "enabled": False,
                "sampleRate": 0.0,
                "captured": 0,
                "labelled": 0,
                "labelledByClass": {},
                "lastLabelAt": None,
                "drift": drift,
            }
        try:
            counts = await asyncio.to_thread(labels.count, self.capture.store)
        except CaptureStoreError as error:
            raise CaptureStorageFailed(str(error)) from None
        return {
            "enabled": True,
            "sampleRate": self.capture.settings.sample_rate,
            "captured": counts.captured,
            "labelled": counts.labelled,
            "labelledByClass": counts.labelled_by_class,
            "lastLabelAt": counts.last_label_at,
            "drift": drift,
        }

    def _export_drift(self) -> None:
        for name, window in self.drift.items():
            snapshot = window.snapshot()
            for label, share in snapshot.predicted_share.items():
                self.metrics.class_share.labels(name, label).set(share)
            self.metrics.top_score_mean.labels(name).set(snapshot.mean_top_score)
            self.metrics.drift.labels(name).set(snapshot.divergence)


def _identity(model: Model) -> ModelIdentity:
    card = model.card
    return ModelIdentity(model.name, model.version, card.sha256, model.classes, card.mean, card.std)
