"""Labels of captured requests: attach one (from the feedback endpoint or `crucible label`), keep the
image-folder view `labelled/<class>/<id>.png` in step, and count what a destination holds.

The layout below a capture destination (see docs/feedback.md):

    requests/<id>.json, requests/<id>.png | requests/<id>.npy   written by the server
    models/<sha256>.json                                        the served model's name and classes
    labels/<id>.json                                            {"id", "label", "time", "source"}
    labelled/<class>/<id>.png                                   what a TrainingRun reads

One file per id and label, never a file that several replicas append to. Pure logic over a
CaptureStore: no torch, no HTTP.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from crucible.server.capture_store import CaptureStore

REQUESTS, LABELS, LABELLED, MODELS = "requests", "labels", "labelled", "models"
# Request ids are file names: the server's own are 32 hex digits; a client's v2 `id` is used as the
# capture id only when it matches this too (else a fresh id is used, see docs/feedback.md).
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
SOURCES = ("api", "import")


class UnknownRequest(Exception):
    """No captured request has this id."""


class UnknownLabel(Exception):
    """The label is not one of the model's classes; the message lists them."""


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_request_id(text: str) -> bool:
    return bool(ID_PATTERN.match(text))


def record_name(request_id: str) -> str:
    return f"{REQUESTS}/{request_id}.json"


def check_label(label: str, classes: list[str]) -> None:
    if label not in classes:
        raise UnknownLabel(f"label {label!r} is not one of the model's classes: {', '.join(classes)}")


def read_record(store: CaptureStore, request_id: str) -> dict:
    """The captured record of `request_id`; UnknownRequest when there is none."""
    data = store.read(record_name(request_id)) if is_request_id(request_id) else None
    if data is None:
        raise UnknownRequest(f"id {request_id!r}: no captured request has this id in {store.uri}")
    return json.loads(data)


def tensor_png(array: np.ndarray, record_input: dict) -> bytes:
    """A captured tensor [3, H, W] as the picture the model saw: UINT8 pixels as they are, FP32
    un-normalized with the record's mean and std."""
    if array.dtype != np.uint8:
        norm = record_input.get("normalization") or {"mean": [0.0] * 3, "std": [1.0] * 3}
        mean = np.asarray(norm["mean"], dtype=np.float32).reshape(3, 1, 1)
        std = np.asarray(norm["std"], dtype=np.float32).reshape(3, 1, 1)
        array = np.clip(np.rint((array.astype(np.float32) * std + mean) * 255), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0))).save(buffer, format="PNG")
    return buffer.getvalue()


def _labelled_png(store: CaptureStore, request_id: str, record: dict) -> bytes:
    record_input = record.get("input") or {}
    data = store.read(f"{REQUESTS}/{record_input.get('file') or request_id + '.png'}")
    if data is None:
        raise UnknownRequest(f"id {request_id!r}: the captured input is missing in {store.uri}")
    if record_input.get("kind") == "tensor":
        return tensor_png(np.load(io.BytesIO(data), allow_pickle=False), record_input)
    return data


@dataclass(frozen=True)
class Labelled:
    id: str
    label: str
    previous: str | None  # the label it had before (a relabel), or None


def attach_label(
    store: CaptureStore, request_id: str, label: str, classes: list[str], source: str = "api"
) -> Labelled:
    """Label a captured request: labelled/<label>/<id>.png, then labels/<id>.json (written last, so a
    label file always has its image). A relabel moves the image out of the old class's folder."""
    check_label(label, classes)
    record = read_record(store, request_id)
    old = store.read(f"{LABELS}/{request_id}.json")
    previous = json.loads(old).get("label") if old is not None else None
    store.write(f"{LABELLED}/{label}/{request_id}.png", _labelled_png(store, request_id, record))
    if previous is not None and previous != label:
        store.delete(f"{LABELLED}/{previous}/{request_id}.png")
    document = {"id": request_id, "label": label, "time": now_rfc3339(), "source": source}
    store.write(f"{LABELS}/{request_id}.json", json.dumps(document).encode())
    return Labelled(request_id, label, previous)


def write_model(store: CaptureStore, name: str, version: str, sha256: str, classes: list[str]) -> None:
    """models/<sha256>.json: what `crucible label` checks labels of this model's requests against."""
    document = {"name": name, "version": version, "sha256": sha256, "classes": classes}
    store.write(f"{MODELS}/{sha256}.json", json.dumps(document).encode())


def model_classes(store: CaptureStore, record: dict) -> list[str] | None:
    """The classes of the model that answered a captured request, from models/<sha256>.json."""
    sha256 = (record.get("model") or {}).get("sha256")
    data = store.read(f"{MODELS}/{sha256}.json") if sha256 else None
    return json.loads(data)["classes"] if data is not None else None


@dataclass(frozen=True)
class Counts:
    captured: int
    labelled: int
    labelled_by_class: dict[str, int]
    last_label_at: str | None


def count(store: CaptureStore) -> Counts:
    """What the destination holds, whichever replica wrote it."""
    captured = sum(1 for item in store.listing(REQUESTS) if item.name.endswith(".json"))
    labels = [item for item in store.listing(LABELS) if item.name.endswith(".json")]
    by_class: Counter[str] = Counter()
    for item in store.listing(LABELLED):
        folder, _, file = item.name.partition("/")
        if file.endswith(".png") and "/" not in file:
            by_class[folder] += 1
    last = max((item.modified for item in labels), default=None)
    last_text = last.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if last else None
    return Counts(captured, len(labels), dict(sorted(by_class.items())), last_text)
