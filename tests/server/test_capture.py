"""Capture, labels and the drift signal of the real app around the digits model: what is stored, what a
client sees (request ids, feedback answers), and that a slow or failing store never fails a request."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from crucible.server.app import create_app
from crucible.server.capture import Capture
from crucible.server.capture_store import CaptureStoreError, LocalStore
from crucible.server.drift import DriftWindow, js_divergence
from crucible.server.repository import ModelRepository
from crucible.server.settings import CaptureSettings, ServerSettings
from tests.server.helpers import MODEL_NAME, infer_body, metric_value, normalize, png_bytes

INFER = f"/v2/models/{MODEL_NAME}/infer"
FEEDBACK = f"/v2/models/{MODEL_NAME}/feedback"
CAPTURE = f"/v2/models/{MODEL_NAME}/capture"
CLASSES = [str(d) for d in range(10)]


@contextmanager
def serving(model, store_dir: Path | None = None, store=None, **capture) -> Iterator[TestClient]:
    settings = ServerSettings(
        max_images=10,
        drift_window=capture.pop("drift_window", 1000),
        capture=CaptureSettings(destination=str(store_dir) if store_dir else None, **capture),
    )
    with TestClient(create_app(ModelRepository([model]), settings, capture_store=store)) as client:
        yield client


def written(client: TestClient, request_id: str) -> None:
    """Wait until the server's writer is done with `request_id`."""
    client.app.state.plane.capture.wait_written(request_id, 10)


def predict(client: TestClient, *images: np.ndarray) -> dict:
    files = [("files", (f"digit{i}.png", png_bytes(image), "image/png")) for i, image in enumerate(images)]
    response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text
    return response


def test_every_prediction_carries_its_request_id_with_capture_off(client, digit_pixels):
    pixels, _ = digit_pixels
    answer = predict(client, pixels[0], pixels[1])
    ids = [item["id"] for item in answer.json()["predictions"]]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and ids[0] != ids[1]
    assert answer.headers["X-Request-Id"] == ", ".join(ids)

    infer = client.post(INFER, json=infer_body(pixels[:1]))
    assert infer.json()["id"] == infer.headers["X-Request-Id"] and len(infer.headers["X-Request-Id"]) == 32
    kept = client.post(INFER, json=infer_body(pixels[:1], id="client-42"))
    assert (kept.json()["id"], kept.headers["X-Request-Id"]) == ("client-42", "client-42")
    # An id that cannot name a file is echoed in the body; the capture id is a fresh one.
    odd = client.post(INFER, json=infer_body(pixels[:1], id="../../etc/passwd"))
    assert odd.json()["id"] == "../../etc/passwd" and len(odd.headers["X-Request-Id"]) == 32

    refused = client.post(FEEDBACK, json={"id": ids[0], "label": "3"})
    assert refused.status_code == 409 and "capture is off" in refused.json()["error"]
    assert client.get(CAPTURE).json()["enabled"] is False


def test_an_upload_is_stored_as_png_with_its_record_and_labelled_into_the_image_folder_view(
    digits_model, digit_pixels, tmp_path
):
    pixels, _ = digit_pixels
    with serving(digits_model, tmp_path) as client:
        request_id = predict(client, pixels[3]).json()["predictions"][0]["id"]
        written(client, request_id)
        record = json.loads((tmp_path / "requests" / f"{request_id}.json").read_text())
        assert record["id"] == request_id and record["time"].endswith("Z")
        assert record["model"] == {
            "name": MODEL_NAME,
            "version": digits_model.version,
            "sha256": digits_model.card.sha256,
        }
        assert record["input"] == {"kind": "image", "file": f"{request_id}.png", "shape": [3, 16, 16]}
        assert record["prediction"][0]["label"] in CLASSES and len(record["prediction"]) == 5
        stored = np.asarray(Image.open(tmp_path / "requests" / f"{request_id}.png")).transpose(2, 0, 1)
        assert np.array_equal(stored, pixels[3])

        answer = client.post(FEEDBACK, json={"id": request_id, "label": "3"})
        assert (answer.status_code, answer.json()) == (200, {"id": request_id, "label": "3"})
        assert (tmp_path / "labelled" / "3" / f"{request_id}.png").read_bytes() == (
            tmp_path / "requests" / f"{request_id}.png"
        ).read_bytes()
        label = json.loads((tmp_path / "labels" / f"{request_id}.json").read_text())
        assert (label["id"], label["label"], label["source"]) == (request_id, "3", "api")

        # A relabel moves the image to the new class's folder.
        assert client.post(FEEDBACK, json={"id": request_id, "label": "8"}).status_code == 200
        assert not (tmp_path / "labelled" / "3" / f"{request_id}.png").exists()
        assert (tmp_path / "labelled" / "8" / f"{request_id}.png").is_file()


def test_feedback_refuses_unknown_labels_with_the_class_list_and_unknown_ids(
    digits_model, digit_pixels, tmp_path
):
    pixels, _ = digit_pixels
    with serving(digits_model, tmp_path) as client:
        request_id = predict(client, pixels[0]).json()["predictions"][0]["id"]
        wrong = client.post(FEEDBACK, json={"id": request_id, "label": "cat"})
        assert wrong.status_code == 422
        assert wrong.json()["error"] == "label 'cat' is not one of the model's classes: " + ", ".join(CLASSES)
        unknown = client.post(FEEDBACK, json={"id": "0" * 32, "label": "1"})
        assert unknown.status_code == 404 and "was not captured" in unknown.json()["error"]
        missing = client.post(FEEDBACK, json={"label": "1"})
        assert missing.status_code == 400 and "id" in missing.json()["error"]
        other_model = client.post("/v2/models/nope/feedback", json={"id": request_id, "label": "1"})
        assert other_model.status_code == 404


def test_tensors_are_stored_as_npy_with_datatype_and_normalization_and_counted(
    digits_model, digit_pixels, tmp_path, digits_artifact
):
    pixels, labels = digit_pixels
    with serving(digits_model, tmp_path) as client:
        raw = client.post(INFER, json=infer_body(pixels[:1])).headers["X-Request-Id"]
        normalized = client.post(INFER, json=infer_body(normalize(digits_artifact, pixels[1:2]), "FP32"))
        batch = client.post(INFER, json=infer_body(pixels[2:4])).headers["X-Request-Id"]
        fp32 = normalized.headers["X-Request-Id"]
        for request_id in (raw, fp32, f"{batch}-0", f"{batch}-1"):
            written(client, request_id)

        record = json.loads((tmp_path / "requests" / f"{raw}.json").read_text())
        assert record["input"] == {
            "kind": "tensor",
            "file": f"{raw}.npy",
            "shape": [3, 16, 16],
            "datatype": "UINT8",
        }
        assert np.array_equal(np.load(tmp_path / "requests" / f"{raw}.npy"), pixels[0])
        fp32_input = json.loads((tmp_path / "requests" / f"{fp32}.json").read_text())["input"]
        assert fp32_input["datatype"] == "FP32"
        assert fp32_input["normalization"]["mean"] == list(digits_model.card.mean)
        # Image i of a batch is captured as <id>-<i>.
        assert np.array_equal(np.load(tmp_path / "requests" / f"{batch}-1.npy"), pixels[3])

        # A labelled tensor joins the image-folder view as the picture the model saw.
        assert client.post(FEEDBACK, json={"id": fp32, "label": str(labels[1])}).status_code == 200
        assert client.post(FEEDBACK, json={"id": raw, "label": str(labels[0])}).status_code == 200
        view = np.asarray(Image.open(tmp_path / "labelled" / str(labels[1]) / f"{fp32}.png")).transpose(
            2, 0, 1
        )
        assert np.abs(view.astype(int) - pixels[1]).max() <= 1

        status = client.get(CAPTURE).json()
        assert status["enabled"] is True and status["sampleRate"] == 1.0
        assert (status["captured"], status["labelled"]) == (4, 2)
        assert status["labelledByClass"] == {str(labels[0]): 1, str(labels[1]): 1}
        assert status["lastLabelAt"].endswith("Z")
        assert status["drift"]["window"] == 4


def test_the_sample_rate_decides_which_requests_are_stored():
    draws = iter([0.05, 0.5, 0.2, 0.9])
    capture = Capture(
        LocalStore(Path("/nonexistent")), CaptureSettings("x", sample_rate=0.25), [], draw=lambda: next(draws)
    )
    assert [capture.sampled() for _ in range(4)] == [True, False, True, False]
    assert Capture(LocalStore(Path("/x")), CaptureSettings("x", sample_rate=1.0), []).sampled()
    assert not CaptureSettings("dir", sample_rate=0).enabled and not CaptureSettings(None).enabled


class FlakyStore(LocalStore):
    """Every other captured input fails to write, as a store that answers 500 half the time."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.inputs = 0

    def write(self, name: str, data: bytes) -> None:
        self.inputs += name.endswith(".npy")
        if name.endswith(".npy") and self.inputs % 2 == 0:
            raise CaptureStoreError(f"cannot write {name}: 500 Internal Server Error")
        super().write(name, data)


class BlockedStore(LocalStore):
    """A store that does not answer until released."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = threading.Event()

    def write(self, name: str, data: bytes) -> None:
        self.release.wait(10)
        super().write(name, data)


def test_a_failing_store_is_counted_and_never_fails_a_request(digits_model, digit_pixels, tmp_path):
    pixels, _ = digit_pixels
    store = FlakyStore(tmp_path)
    with serving(digits_model, tmp_path, store=store) as client:
        ids = [
            client.post(INFER, json=infer_body(pixels[i : i + 1])).headers["X-Request-Id"] for i in range(10)
        ]
        for request_id in ids:
            written(client, request_id)
        metrics = client.get("/metrics").text
    errors = metric_value(metrics, "crucible_capture_writes_total", model=MODEL_NAME, outcome="error")
    ok = metric_value(metrics, "crucible_capture_writes_total", model=MODEL_NAME, outcome="ok")
    assert errors > 0 and ok > 0 and errors + ok == 10


def test_a_full_queue_drops_captures_and_requests_still_succeed(digits_model, digit_pixels, tmp_path):
    pixels, _ = digit_pixels
    store = BlockedStore(tmp_path)
    with serving(digits_model, tmp_path, store=store, queue_size=1) as client:
        statuses = [client.post(INFER, json=infer_body(pixels[i : i + 1])).status_code for i in range(8)]
        dropped = metric_value(
            client.get("/metrics").text, "crucible_capture_dropped_total", reason="queue_full"
        )
        store.release.set()
    assert statuses == [200] * 8
    assert dropped >= 5  # one item in the writer's hands, one in the queue, the rest dropped


def test_max_bytes_per_day_stops_storing_for_the_day(digits_model, digit_pixels, tmp_path):
    pixels, _ = digit_pixels
    with serving(digits_model, tmp_path, max_bytes_per_day=1500) as client:
        ids = [
            client.post(INFER, json=infer_body(pixels[i : i + 1])).headers["X-Request-Id"] for i in range(6)
        ]
        for request_id in ids:
            written(client, request_id)
        metrics = client.get("/metrics").text
    stored = sorted((tmp_path / "requests").glob("*.json"))
    size = sum(path.stat().st_size for path in (tmp_path / "requests").iterdir())
    assert 1 <= len(stored) < 6 and size <= 1500
    assert metric_value(metrics, "crucible_capture_dropped_total", reason="max_bytes_per_day") == 6 - len(
        stored
    )


def test_the_drift_signal_follows_the_predicted_classes_in_a_sliding_window(digits_model, digit_pixels):
    pixels, _ = digit_pixels
    with serving(digits_model, drift_window=4) as client:
        for _ in range(3):
            client.post(INFER, json=infer_body(pixels[7:8]))
        metrics = client.get("/metrics").text
        drift = client.get(CAPTURE).json()["drift"]
    assert (
        drift["window"] == 3
        and drift["predictedShare"][max(drift["predictedShare"], key=drift["predictedShare"].get)] == 1
    )
    # The card records the training class counts: digits are nearly balanced.
    assert (
        sum(drift["trainingShare"].values()) == pytest.approx(1)
        and min(drift["trainingShare"].values()) > 0.08
    )
    assert 0.5 < drift["divergence"] <= 1
    assert metric_value(metrics, "crucible_prediction_drift", model=MODEL_NAME) == pytest.approx(
        drift["divergence"]
    )
    assert metric_value(metrics, "crucible_prediction_top_score_mean", model=MODEL_NAME) == pytest.approx(
        drift["meanTopScore"]
    )
    top = max(drift["predictedShare"], key=drift["predictedShare"].get)
    assert metric_value(metrics, "crucible_predicted_class_share", model=MODEL_NAME, **{"class": top}) == 1


def test_the_window_forgets_old_predictions_and_the_divergence_is_jensen_shannon():
    window = DriftWindow(["a", "b"], [1, 1], size=2)
    window.add(np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]], dtype=np.float32))
    snapshot = window.snapshot()
    assert snapshot.window == 2 and snapshot.predicted_share == {"a": 0.5, "b": 0.5}
    assert snapshot.divergence == 0 and snapshot.mean_top_score == pytest.approx(0.75)
    assert js_divergence([1, 0], [0, 1]) == 1
    assert js_divergence([1, 0], [0.5, 0.5]) == pytest.approx(0.3112781, abs=1e-6)


def test_an_exif_rotated_jpeg_is_stored_upright(digits_model, tmp_path):
    picture = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = picture.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", exif=exif)
    with serving(digits_model, tmp_path) as client:
        answer = client.post("/predict", files=[("files", ("photo.jpg", buffer.getvalue(), "image/jpeg"))])
        request_id = answer.json()["predictions"][0]["id"]
        written(client, request_id)
    record = json.loads((tmp_path / "requests" / f"{request_id}.json").read_text())
    assert record["input"]["shape"] == [3, 40, 20]
    stored = Image.open(tmp_path / "requests" / f"{request_id}.png")
    assert stored.size == (20, 40) and "exif" not in stored.info  # upright, and no metadata kept


def test_metadata_in_an_uploaded_png_is_not_kept(digits_model, digit_pixels, tmp_path):
    from PIL.PngImagePlugin import PngInfo

    pixels, _ = digit_pixels
    text = PngInfo()
    text.add_text("Location", "51.5N 0.1W")
    buffer = io.BytesIO()
    Image.fromarray(pixels[5].transpose(1, 2, 0)).save(buffer, format="PNG", pnginfo=text)
    with serving(digits_model, tmp_path) as client:
        answer = client.post("/predict", files=[("files", ("tagged.png", buffer.getvalue(), "image/png"))])
        request_id = answer.json()["predictions"][0]["id"]
        written(client, request_id)
    stored = Image.open(tmp_path / "requests" / f"{request_id}.png")
    stored.load()
    assert "Location" not in stored.info and np.array_equal(np.asarray(stored).transpose(2, 0, 1), pixels[5])


def test_an_s3_destination_holds_captures_labels_and_counts(
    digits_model, digit_pixels, s3_store, monkeypatch
):
    for name, value in s3_store.env().items():
        monkeypatch.setenv(name, value)
    pixels, _ = digit_pixels
    bucket = s3_store.new_bucket()
    settings = ServerSettings(capture=CaptureSettings(destination=f"s3://{bucket}/capture/digits"))
    with TestClient(create_app(ModelRepository([digits_model]), settings)) as client:
        request_id = client.post(INFER, json=infer_body(pixels[4:5])).headers["X-Request-Id"]
        written(client, request_id)
        assert client.post(FEEDBACK, json={"id": request_id, "label": "4"}).status_code == 200
        assert client.post(FEEDBACK, json={"id": "1" * 32, "label": "4"}).status_code == 404
        status = client.get(CAPTURE).json()
    assert (status["captured"], status["labelled"], status["labelledByClass"]) == (1, 1, {"4": 1})
    keys = s3_store.keys(bucket, "capture/digits/")
    assert f"capture/digits/labelled/4/{request_id}.png" in keys
    assert {f"capture/digits/requests/{request_id}.{ext}" for ext in ("json", "npy")} <= set(keys)


def test_the_training_share_is_the_cards_training_class_counts(client, digits_artifact):
    counts = json.loads((digits_artifact / "model.json").read_text())["trainClassCounts"]
    assert list(counts) == CLASSES and all(count > 0 for count in counts.values())
    training = client.get(CAPTURE).json()["drift"]["trainingShare"]
    total = sum(counts.values())
    assert training == pytest.approx({name: count / total for name, count in counts.items()})
