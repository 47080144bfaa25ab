"""Every endpoint of the real app, through FastAPI's test client, with the digits model."""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from crucible.server.app import create_app
from crucible.server.repository import ModelRepository, load_artifact
from crucible.server.settings import ServerSettings
from crucible.trainer.imaging import channels_first, open_rgb, resize
from tests.server.helpers import (
    MODEL_NAME,
    infer_body,
    metric_value,
    normalize,
    png_bytes,
    reference_probabilities,
)

INFER = f"/v2/models/{MODEL_NAME}/infer"


def output(response_json: dict, name: str) -> dict:
    return next(o for o in response_json["outputs"] if o["name"] == name)


# Health and metadata


def test_health_bodies_are_as_kserve_returns_them(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    model_ready = client.get(f"/v2/models/{MODEL_NAME}/ready")
    assert (model_ready.status_code, model_ready.json()) == (200, {"name": MODEL_NAME, "ready": True})


def test_server_metadata(client):
    assert client.get("/v2").json() == {
        "name": "crucible",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data"],
    }


def test_model_metadata_describes_inputs_and_outputs_with_a_dynamic_batch_dimension(client, digits_model):
    metadata = client.get(f"/v2/models/{MODEL_NAME}").json()
    assert metadata["name"] == MODEL_NAME
    assert metadata["versions"] == [digits_model.version]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 16, 16]}]
    assert metadata["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        {"name": "labels", "datatype": "BYTES", "shape": [-1]},
    ]
    assert metadata["parameters"]["input_datatypes"] == ["FP32", "UINT8"]
    assert metadata["parameters"]["classes"] == [str(d) for d in range(10)]
    assert metadata["parameters"]["sha256"] == digits_model.card.sha256


def test_model_metadata_says_how_batches_are_formed(client, digits_artifact):
    uncalibrated = client.get(f"/v2/models/{MODEL_NAME}").json()["parameters"]["batching"]
    assert uncalibrated == {"max_batch_size": 32, "calibrated": False, "ms_per_image": {}}
    model = load_artifact(digits_artifact, torch.device("cpu"))
    model.calibrate_batch_size(16)
    # a model whose larger batches measured slower per image is served at the smaller maximum
    model.calibration = dataclasses.replace(model.calibration, max_batch_size=4)
    with TestClient(create_app(ModelRepository([model]), ServerSettings(max_batch_size=16))) as calibrated:
        batching = calibrated.get(f"/v2/models/{MODEL_NAME}").json()["parameters"]["batching"]
        assert calibrated.app.state.plane._batchers[MODEL_NAME].max_batch_size == 4
    assert (batching["max_batch_size"], batching["calibrated"]) == (4, True)
    assert list(batching["ms_per_image"]) == ["1", "2", "4", "8", "16"]


def test_versioned_routes_answer_for_the_served_version_only(client, digits_model):
    version = digits_model.version
    assert client.get(f"/v2/models/{MODEL_NAME}/versions/{version}").json()["versions"] == [version]
    assert client.get(f"/v2/models/{MODEL_NAME}/versions/{version}/ready").json()["ready"] is True
    missing = client.get(f"/v2/models/{MODEL_NAME}/versions/0000/ready")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": f"model '{MODEL_NAME}' version '0000' not found"},
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/cats"),
        ("GET", "/v2/models/cats/ready"),
        ("POST", "/v2/models/cats/infer"),
    ],
)
def test_an_unknown_model_name_is_404_naming_it(client, method, path):
    response = client.request(method, path, json=infer_body(np.zeros((1, 3, 16, 16), np.uint8)))
    assert response.status_code == 404
    assert response.json() == {"error": "model 'cats' not found"}


def test_unknown_paths_and_methods_get_the_same_error_body(client):
    assert client.get("/v3/nothing").json() == {"error": "Not Found"}
    wrong_method = client.get(INFER)
    assert (wrong_method.status_code, wrong_method.json()) == (405, {"error": "Method Not Allowed"})


def test_before_the_worker_runs_nothing_is_ready(digits_model):
    app = create_app(ModelRepository([digits_model]))
    client = TestClient(app)  # no `with`: the lifespan (and the inference worker) never starts
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (503, {"ready": False})
    model_ready = client.get(f"/v2/models/{MODEL_NAME}/ready")
    assert (model_ready.status_code, model_ready.json()) == (
        503,
        {"error": f"model '{MODEL_NAME}' is not ready"},
    )
    infer = client.post(INFER, json=infer_body(np.zeros((1, 3, 16, 16), np.uint8)))
    assert (infer.status_code, infer.json()) == (503, {"error": f"model '{MODEL_NAME}' is not ready"})


# Inference


def test_uint8_infer_matches_the_models_own_output(client, digits_artifact, digit_pixels):
    pixels, truth = digit_pixels
    response = client.post(INFER, json=infer_body(pixels, id="digits-1"))
    assert response.status_code == 200
    result = response.json()
    assert (result["model_name"], result["id"]) == (MODEL_NAME, "digits-1")
    probabilities = output(result, "probabilities")
    assert (probabilities["datatype"], probabilities["shape"]) == ("FP32", [10, 10])
    expected = reference_probabilities(digits_artifact, pixels)
    np.testing.assert_allclose(np.reshape(probabilities["data"], (10, 10)), expected, atol=1e-5)
    labels = output(result, "labels")
    assert (labels["datatype"], labels["shape"]) == ("BYTES", [10])
    assert labels["data"] == [str(i) for i in expected.argmax(axis=1)]
    # The trained model reads real handwriting: most of the ten digits come back right.
    assert sum(label == str(digit) for label, digit in zip(labels["data"], truth, strict=True)) >= 8


def test_fp32_infer_of_normalized_input_matches_the_models_own_output(client, digits_artifact, digit_pixels):
    pixels, _ = digit_pixels
    normalized = normalize(digits_artifact, pixels)
    response = client.post(INFER, json=infer_body(normalized, datatype="FP32"))
    assert response.status_code == 200
    probabilities = np.reshape(output(response.json(), "probabilities")["data"], (10, 10))
    np.testing.assert_allclose(
        probabilities, reference_probabilities(digits_artifact, normalized=normalized), atol=1e-5
    )


def test_binary_tensor_data_gives_the_same_answer_as_json(client, digit_pixels):
    pixels, _ = digit_pixels
    header = (
        b'{"inputs": [{"name": "input", "datatype": "UINT8", "shape": [10, 3, 16, 16], '
        b'"parameters": {"binary_data_size": 7680}}]}'
    )
    binary = client.post(
        INFER,
        content=header + pixels.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    as_json = client.post(INFER, json=infer_body(pixels))
    assert binary.status_code == 200
    assert output(binary.json(), "probabilities") == output(as_json.json(), "probabilities")


def test_infer_returns_only_the_outputs_asked_for(client, digit_pixels):
    pixels, _ = digit_pixels
    response = client.post(INFER, json=infer_body(pixels[:2], outputs=[{"name": "labels"}]))
    assert [o["name"] for o in response.json()["outputs"]] == ["labels"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"{oops",
            "request body is not valid JSON: unexpected character, expected a string key: line 1 column 2 (char 1)",
        ),
        (
            b'{"inputs": [{"name": "input", "datatype": "FP16", "shape": [1, 3, 16, 16], "data": []}]}',
            "inputs[0].datatype: 'FP16' is not supported; allowed: FP32, UINT8",
        ),
        (
            b'{"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 3, 8, 8], "data": []}]}',
            "inputs[0].shape: expected [N, 3, 16, 16] with N >= 1, got [1, 3, 8, 8]",
        ),
        (
            b'{"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 3, 16, 16], "data": [1, 2, 3]}]}',
            "inputs[0].data: expected 768 values for shape [1, 3, 16, 16], got 3",
        ),
    ],
)
def test_bad_infer_requests_get_400_naming_what_was_wrong(client, body, message):
    response = client.post(INFER, content=body, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()) == (400, {"error": message})


def test_too_many_images_in_one_infer_request_is_413(client):
    response = client.post(INFER, json=infer_body(np.zeros((11, 3, 16, 16), np.uint8)))
    assert (response.status_code, response.json()) == (
        413,
        {"error": "inputs[0].shape: 11 images in one request; the limit is 10"},
    )


# Overload


def test_a_full_queue_answers_503_with_retry_after_at_once(digits_model, digit_pixels, monkeypatch):
    pixels, _ = digit_pixels
    release, in_forward = threading.Event(), threading.Event()
    predict = digits_model.predict

    def held_forward(parts):  # the first forward pass holds the worker until the test lets it go
        in_forward.set()
        release.wait(10)
        return predict(parts)

    monkeypatch.setattr(digits_model, "predict", held_forward)
    app = create_app(ModelRepository([digits_model]), ServerSettings(max_queue_images=2))
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool:
        running = pool.submit(client.post, INFER, json=infer_body(pixels[:1]))
        assert in_forward.wait(10)
        waiting = pool.submit(client.post, INFER, json=infer_body(pixels[:2]))  # 2 images queue up

        def queued() -> float:
            return metric_value(client.get("/metrics").text, "crucible_server_queue_depth", model=MODEL_NAME)

        deadline = time.monotonic() + 10
        while queued() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = client.post(INFER, json=infer_body(pixels[:1]))
        release.set()
        assert running.result().status_code == waiting.result().status_code == 200
        metrics = client.get("/metrics").text
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json() == {
        "error": f"model '{MODEL_NAME}' is overloaded: 2 images are waiting (limit 2); retry later"
    }
    assert (
        metric_value(
            metrics, "crucible_server_requests_total", endpoint="/v2/models/{name}/infer", code="503"
        )
        == 1
    )


# Body size limit


@pytest.fixture
def small_limit_client(digits_model):
    with TestClient(
        create_app(ModelRepository([digits_model]), ServerSettings(max_body_bytes=1000))
    ) as client:
        yield client


def test_a_declared_body_over_the_limit_is_413_before_it_is_read(small_limit_client):
    response = small_limit_client.post(
        INFER, content=b"x" * 1001, headers={"content-type": "application/json"}
    )
    assert (response.status_code, response.json()) == (
        413,
        {"error": "request body of 1001 bytes is over the limit of 1000 bytes"},
    )


def test_a_streamed_body_over_the_limit_is_413_once_it_crosses_it(small_limit_client):
    def chunks():  # no Content-Length: sent chunked
        for _ in range(5):
            yield b"x" * 300

    response = small_limit_client.post(INFER, content=chunks())
    assert (response.status_code, response.json()) == (
        413,
        {"error": "request body is over the limit of 1000 bytes"},
    )


def test_uploads_are_held_to_the_body_limit_too(small_limit_client):
    big = png_bytes(np.random.default_rng(0).integers(0, 255, (3, 40, 40), dtype=np.uint8))
    response = small_limit_client.post("/predict", files={"files": ("big.png", big, "image/png")})
    assert response.status_code == 413


# Image uploads


def test_predict_of_uploaded_pngs_matches_the_models_own_output(client, digits_artifact, digit_pixels):
    pixels, _ = digit_pixels
    files = [("files", (f"digit{i}.png", png_bytes(pixels[i]), "image/png")) for i in range(3)]
    response = client.post("/predict?top_k=3", files=files)
    assert response.status_code == 200
    result = response.json()
    expected = reference_probabilities(digits_artifact, pixels[:3])
    assert [p["file"] for p in result["predictions"]] == ["digit0.png", "digit1.png", "digit2.png"]
    for prediction, probabilities in zip(result["predictions"], expected, strict=True):
        best = np.argsort(-probabilities)[:3]
        assert [entry["label"] for entry in prediction["top_k"]] == [str(i) for i in best]
        np.testing.assert_allclose([e["score"] for e in prediction["top_k"]], probabilities[best], atol=1e-5)
        assert (prediction["label"], prediction["score"]) == (
            prediction["top_k"][0]["label"],
            prediction["top_k"][0]["score"],
        )


def test_a_large_jpeg_is_resized_to_the_models_input_as_in_training(client, digits_artifact):
    rng = np.random.default_rng(3)
    picture = Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG")
    # Decoded and resized the way the trainer's pipeline does it (the digits model stretches to 16x16).
    decoded = resize(open_rgb(io.BytesIO(buffer.getvalue()), draft_size=16), 16, "stretch")
    expected = reference_probabilities(digits_artifact, channels_first(decoded)[None].copy())
    response = client.post(
        "/predict?top_k=10", files={"files": ("photo.jpg", buffer.getvalue(), "image/jpeg")}
    )
    top = response.json()["predictions"][0]["top_k"]
    scores = {entry["label"]: entry["score"] for entry in top}
    np.testing.assert_allclose([scores[str(i)] for i in range(10)], expected[0], atol=1e-5)


def test_predict_defaults_to_five_labels(client, digit_pixels):
    pixels, _ = digit_pixels
    response = client.post("/predict", files={"file": ("seven.png", png_bytes(pixels[7]), "image/png")})
    assert len(response.json()["predictions"][0]["top_k"]) == 5


@pytest.mark.parametrize(
    ("files", "status", "message"),
    [
        (
            {"files": ("notes.txt", b"hello", "text/plain")},
            415,
            "file 'notes.txt' is not an image; accepted: PNG, JPEG",
        ),
        ({"files": ("empty.png", b"", "image/png")}, 400, "file 'empty.png' is empty"),
        (
            {"field": (None, "just text")},
            400,
            "files: upload at least one PNG or JPEG image (multipart field `files`)",
        ),
    ],
)
def test_bad_uploads_get_a_clear_4xx(client, files, status, message):
    response = client.post("/predict", files=files)
    assert (response.status_code, response.json()) == (status, {"error": message})


def test_a_gif_is_refused_as_an_unsupported_format(client):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="GIF")
    response = client.post("/predict", files={"files": ("anim.gif", buffer.getvalue(), "image/gif")})
    assert (response.status_code, response.json()) == (
        415,
        {"error": "file 'anim.gif' is GIF; accepted: PNG, JPEG"},
    )


def test_predict_without_multipart_is_415(client):
    response = client.post("/predict", json={"image": "base64..."})
    assert (response.status_code, response.json()) == (
        415,
        {"error": "/predict expects multipart/form-data with PNG or JPEG files; got application/json"},
    )


def test_too_many_uploaded_images_is_413(client, digit_pixels):
    pixels, _ = digit_pixels
    files = [("files", (f"{i}.png", png_bytes(pixels[i % 10]), "image/png")) for i in range(11)]
    response = client.post("/predict", files=files)
    assert (response.status_code, response.json()) == (
        413,
        {"error": "files: more than 10 images in one request"},
    )


def test_predict_validates_its_query(client, digit_pixels):
    pixels, _ = digit_pixels
    files = {"files": ("d.png", png_bytes(pixels[0]), "image/png")}
    bad_top_k = client.post("/predict?top_k=0", files=files)
    assert (bad_top_k.status_code, bad_top_k.json()) == (
        400,
        {"error": "query.top_k: Input should be greater than or equal to 1"},
    )
    unknown_model = client.post("/predict?model=cats", files=files)
    assert (unknown_model.status_code, unknown_model.json()) == (404, {"error": "model 'cats' not found"})


# Page, docs, metrics


def test_the_upload_page_names_the_model(client, digits_model):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f"{MODEL_NAME} (tiny_cnn, 10 classes, version {digits_model.version})" in page.text
    assert 'type="file"' in page.text and "fetch(`predict" in page.text


def test_openapi_documents_the_protocol_and_its_bodies(client):
    assert client.get("/docs").status_code == 200
    document = client.get("/openapi.json").json()
    for path in (
        "/v2/health/live",
        "/v2/health/ready",
        "/v2",
        "/v2/models/{name}",
        "/v2/models/{name}/infer",
        "/predict",
    ):
        assert path in document["paths"]
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InferenceRequest"
    }
    assert {"InferenceRequest", "RequestInput", "InferenceResponse", "ErrorResponse"} <= set(
        document["components"]["schemas"]
    )
    assert "multipart/form-data" in document["paths"]["/predict"]["post"]["requestBody"]["content"]


def test_metrics_count_requests_by_endpoint_and_code_and_batches(client, digits_model, digit_pixels):
    pixels, _ = digit_pixels
    for _ in range(3):
        client.post(INFER, json=infer_body(pixels[:2]))
    client.post(INFER, content=b"{")
    client.get("/v2/models/cats")
    text = client.get("/metrics").text
    infer_route = "/v2/models/{name}/infer"
    assert metric_value(text, "crucible_server_requests_total", endpoint=infer_route, code="200") == 3
    assert metric_value(text, "crucible_server_requests_total", endpoint=infer_route, code="400") == 1
    assert metric_value(text, "crucible_server_requests_total", endpoint="/v2/models/{name}", code="404") == 1
    assert metric_value(text, "crucible_server_request_duration_seconds_count", endpoint=infer_route) == 4
    assert metric_value(text, "crucible_server_batch_size_count", model=MODEL_NAME) == 3
    assert metric_value(text, "crucible_server_batch_size_sum", model=MODEL_NAME) == 6
    assert metric_value(text, "crucible_server_queue_depth", model=MODEL_NAME) == 0
    info = dict(
        model=MODEL_NAME,
        architecture="tiny_cnn",
        sha256=digits_model.card.sha256,
        version=digits_model.version,
    )
    assert metric_value(text, "crucible_server_model_info", **info) == 1
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_random_paths_and_methods_share_one_metrics_series(client):
    for path in ("/a", "/b", "/c/d"):
        client.get(path)
    client.request("BREW", "/pot")
    text = client.get("/metrics").text
    assert (
        metric_value(text, "crucible_server_requests_total", endpoint="unmatched", method="GET", code="404")
        == 3
    )
    assert (
        metric_value(text, "crucible_server_requests_total", endpoint="unmatched", method="other", code="404")
        == 1
    )
    assert "/c/d" not in text and "BREW" not in text


def test_with_one_cpu_uploads_are_decoded_on_the_event_loop_not_a_thread(digits_model, monkeypatch):
    from crucible.server import dataplane

    threads = []
    decode = dataplane.decode_images

    def recording(*args):
        threads.append(threading.current_thread().name)
        return decode(*args)

    monkeypatch.setattr(dataplane, "decode_images", recording)
    for cpus in (1, 2):
        app = create_app(ModelRepository([digits_model]), ServerSettings(cpus=cpus))
        with TestClient(app) as http:
            files = [("files", ("a.png", png_bytes(np.zeros((3, 16, 16), np.uint8)), "image/png"))]
            assert http.post("/predict", files=files).status_code == 200
            loop_thread = http.portal.call(lambda: threading.current_thread().name)
        assert (threads[-1] == loop_thread) == (cpus == 1)
