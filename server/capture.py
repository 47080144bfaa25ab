"""Capture: a sampled share of the requests a server answers is stored (the input and a JSON record of
the prediction) so that people can label them and a later TrainingRun can learn from them.

The request path only draws the sample and puts a small item on a bounded queue (`offer`); one
background thread encodes the items and writes them in batches. A full queue drops the item, a store
that fails counts the failure: neither ever delays or fails a request. `maxBytesPerDay` caps what one
server writes per UTC day (beyond it items are dropped and counted).
"""

from __future__ import annotations

import io
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from PIL import Image, ImageOps

from crucible.server.capture_store import CaptureStore, CaptureStoreError
from crucible.server.labels import REQUESTS, write_model
from crucible.server.settings import CaptureSettings

log = logging.getLogger(__name__)

DROP_QUEUE_FULL = "queue_full"
DROP_DAILY_LIMIT = "max_bytes_per_day"
DROP_SHUTDOWN = "shutdown"
# PNG chunks that say how to show the pixels, nothing about who or where: such a PNG is kept as it is.
PLAIN_PNG_INFO = frozenset({"dpi", "gamma", "srgb", "chromaticity", "aspect", "icc_profile"})
# The writer's CPU share is measured over windows of this length.
PACE_WINDOW_SECONDS = 2.0
# A failing store is logged at most this often (the counter in /metrics has every failure).
LOG_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    sha256: str
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class Item:
    """One captured input and its prediction, as the request path hands it over (not yet encoded)."""

    id: str
    model: ModelIdentity
    prediction: list[dict]
    time: float
    upload: bytes | None = None  # an uploaded image file, as it arrived
    tensor: np.ndarray | None = None  # or one image of an infer request, [3, H, W]
    done: threading.Event = field(default_factory=threading.Event)


def ranked_classes(probabilities: np.ndarray, classes: list[str], k: int) -> list[dict]:
    best = np.argsort(-probabilities, kind="stable")[:k]
    return [{"label": classes[i], "score": float(probabilities[i])} for i in best]


def _image_file(upload: bytes) -> tuple[bytes, list[int]]:
    """The decoded upload as PNG (EXIF orientation applied, RGB or L, original size, no metadata: EXIF,
    text chunks and the like are not kept) and its shape [C, H, W]. A PNG that is already that is
    stored byte for byte."""
    from crucible.trainer.imaging import to_rgb

    with Image.open(io.BytesIO(upload)) as image:
        image.load()  # text chunks after the pixels are read too
        plain = set(image.info) <= PLAIN_PNG_INFO
        if image.format == "PNG" and image.mode in ("RGB", "L") and plain:
            channels = 1 if image.mode == "L" else 3
            return upload, [channels, image.height, image.width]
        picture = ImageOps.exif_transpose(image) if image.mode == "L" else to_rgb(image)
        buffer = io.BytesIO()
        # Level 1: several times faster than the default for a little more space; the writer shares
        # the server's CPU.
        picture.save(buffer, format="PNG", compress_level=1)
        channels = 1 if picture.mode == "L" else 3
        return buffer.getvalue(), [channels, picture.height, picture.width]


def encode(item: Item) -> list[tuple[str, bytes]]:
    """The files of one captured request, the record last (its presence means the capture is whole)."""
    model = item.model
    if item.upload is not None:
        data, shape = _image_file(item.upload)
        file = f"{item.id}.png"
        record_input: dict = {"kind": "image", "file": file, "shape": shape}
    else:
        assert item.tensor is not None
        buffer = io.BytesIO()
        np.save(buffer, item.tensor, allow_pickle=False)
        data, file = buffer.getvalue(), f"{item.id}.npy"
        record_input = {"kind": "tensor", "file": file, "shape": list(item.tensor.shape)}
        if item.tensor.dtype == np.uint8:
            record_input["datatype"] = "UINT8"  # raw pixels 0..255 at the model's input size
        else:
            record_input["datatype"] = "FP32"
            record_input["normalization"] = {
                "mean": list(model.mean),
                "std": list(model.std),
                "scale": "pixels / 255",
            }
    record = {
        "id": item.id,
        "time": rfc3339(item.time),
        "model": {"name": model.name, "version": model.version, "sha256": model.sha256},
        "input": record_input,
        "prediction": item.prediction,
    }
    return [(f"{REQUESTS}/{file}", data), (f"{REQUESTS}/{item.id}.json", json.dumps(record).encode())]


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc_day(seconds: float) -> int:
    return int(seconds // 86400)


class Capture:
    """The sampler, the bounded queue and the writer thread of one server."""

    def __init__(
        self,
        store: CaptureStore,
        settings: CaptureSettings,
        models: list[ModelIdentity],
        on_write: Callable[[str, str], None] = lambda model, outcome: None,
        on_drop: Callable[[str, str], None] = lambda model, reason: None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.settings = settings
        self.models_by_name = {model.name: model for model in models}
        self._on_write, self._on_drop, self._draw = on_write, on_drop, draw
        self._queue: queue.Queue[Item | None] = queue.Queue(settings.queue_size)
        self._pending: dict[str, Item] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._day, self._bytes_today = _utc_day(time.time()), 0
        self._full_day: int | None = None  # the UTC day whose byte budget is spent
        self._last_log = 0.0

    # The request path

    def sampled(self) -> bool:
        rate = self.settings.sample_rate
        return rate >= 1 or self._draw() < rate

    def admit(self, model: str, seconds: float) -> bool:
        """Whether to capture a request now: sampled, and room to store it (else counted as dropped).
        Checked before the request path builds anything for the writer."""
        if not self.sampled():
            return False
        if self._full_day is not None and self._full_day == _utc_day(seconds):
            self._on_drop(model, DROP_DAILY_LIMIT)
            return False
        if self._queue.full():
            self._on_drop(model, DROP_QUEUE_FULL)
            return False
        return True

    def offer(self, item: Item) -> bool:
        """Queue `item` for writing, at once; False (and counted) when it is dropped."""
        if self._full_day is not None and self._full_day == _utc_day(item.time):
            self._on_drop(item.model.name, DROP_DAILY_LIMIT)
            return False
        self._pending[item.id] = item
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            del self._pending[item.id]
            self._on_drop(item.model.name, DROP_QUEUE_FULL)
            return False
        return True

    def wait_written(self, request_id: str, timeout: float) -> None:
        """Block until this server's queued capture of `request_id` (if any) is written or dropped."""
        item = self._pending.get(request_id)
        if item is not None:
            item.done.wait(timeout)

    # The writer

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write what is queued (for at most `drain_seconds`), then end the writer."""
        if self._thread is None:
            return
        self._stopping = True
        deadline = time.monotonic() + self.settings.drain_seconds
        while True:
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    self._drop_queued()
        self._thread.join(max(0.1, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._drop_queued()
            self._thread.join(5)
        self._thread = None

    def _drop_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._finish(item)
                self._on_drop(item.model.name, DROP_SHUTDOWN)

    def _run(self) -> None:
        self._window_cpu, self._window_wall = time.thread_time(), time.monotonic()
        for model in self.models_by_name.values():
            try:
                write_model(self.store, model.name, model.version, model.sha256, model.classes)
            except CaptureStoreError as error:
                self._log_failure(error)
        while True:
            first = self._queue.get()
            batch = [first]
            while len(batch) < self.settings.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for item in batch:
                if item is None:
                    return
                self._write(item)
                if not self._stopping:
                    self._pace()

    def _pace(self) -> None:
        """Sleep off CPU time beyond `max_cpu_share` of the wall time since the window began: the
        writer shares the server's cores (and its GIL) with the requests it must never slow."""
        cpu = time.thread_time() - self._window_cpu
        wall = time.monotonic() - self._window_wall
        excess = cpu / self.settings.max_cpu_share - wall
        if excess > 0:
            time.sleep(min(excess, PACE_WINDOW_SECONDS))
        if wall > PACE_WINDOW_SECONDS:
            self._window_cpu, self._window_wall = time.thread_time(), time.monotonic()

    def _write(self, item: Item) -> None:
        model = item.model.name
        try:
            files = encode(item)
            size = sum(len(data) for _, data in files)
            if not self._within_daily_limit(item.time, size):
                self._on_drop(model, DROP_DAILY_LIMIT)
                return
            for name, data in files:
                self.store.write(name, data)
            self._bytes_today += size
            self._on_write(model, "ok")
        except Exception as error:  # a store failure, or an input that cannot be encoded: counted
            self._on_write(model, "error")
            self._log_failure(error)
        finally:
            self._finish(item)

    def _within_daily_limit(self, seconds: float, size: int) -> bool:
        day = _utc_day(seconds)
        if day != self._day:
            self._day, self._bytes_today, self._full_day = day, 0, None
        limit = self.settings.max_bytes_per_day
        if limit is not None and self._bytes_today + size > limit:
            self._full_day = day
            return False
        return True

    def _finish(self, item: Item) -> None:
        self._pending.pop(item.id, None)
        item.done.set()

    def _log_failure(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = now
            log.warning("capture to %s failed (counted in /metrics): %s", self.store.uri, error)
