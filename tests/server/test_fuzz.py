"""Many malformed requests: none gets a 5xx, every refusal says why, and the server answers afterwards.

Two fuzzers: hypothesis builds infer bodies and uploads around the valid shape (wrong types, shapes,
lengths, values, headers) through the test client; schemathesis drives every operation of the
OpenAPI document, valid and invalid, against the real uvicorn process.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from crucible.server.app import create_app
from crucible.server.repository import ModelRepository
from crucible.server.settings import ServerSettings
from tests.server.helpers import MODEL_NAME, infer_body

INFER = f"/v2/models/{MODEL_NAME}/infer"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)

# Each field of a valid request is kept (most often), replaced by something else, or dropped, so
# that malformed requests lie close to valid ones, where a decoder's corner cases are.
shapes = (
    st.integers(-1, 6).map(lambda images: [images, 3, 16, 16])
    | st.lists(st.sampled_from([1, 2, 3, 16]), min_size=3, max_size=5)
    | st.lists(st.integers(-2, 20), max_size=5)
)
datatypes = st.sampled_from(["UINT8", "FP32", "FP16", "INT64", "BYTES", "uint8", ""])
pixel_values = st.integers(-3, 300) | st.floats(-1e40, 1e40, allow_nan=False) | json_scalars


DROP = object()


@st.composite
def field(draw, valid: object, replacement: st.SearchStrategy) -> object:
    choice = draw(st.sampled_from(["keep"] * 16 + ["replace"] * 3 + ["drop"]))
    if choice == "keep":
        return valid
    return draw(replacement) if choice == "replace" else DROP


@st.composite
def infer_documents(draw) -> dict:
    images = draw(st.integers(1, 5))  # 5 is over the fuzzed app's limit of 4
    shape = draw(field([images, 3, 16, 16], shapes | json_values))
    count = 768 * images
    if isinstance(shape, list) and all(isinstance(d, int) and 0 <= d < 40 for d in shape):
        count = int(np.prod(shape)) if shape else 0
    # Valid pixels come from a seed (hypothesis draws long lists slowly); invalid data is short or
    # has the right length with one bad value in it.
    pixels = np.random.default_rng(draw(st.integers(0, 2**32))).integers(0, 256, min(count, 10**5)).tolist()
    position = draw(st.integers(0, max(len(pixels) - 1, 0)))
    one_bad_value = st.builds(lambda bad: [*pixels[:position], bad, *pixels[position + 1 :]], pixel_values)
    other_data = one_bad_value | st.lists(st.integers(0, 255), max_size=40) | json_values
    tensor = {
        "name": draw(field("input", json_values)),
        "datatype": draw(field(draw(st.sampled_from(["UINT8", "FP32"])), datatypes | json_values)),
        "shape": shape,
        "data": draw(field(pixels, other_data)),
        "parameters": draw(
            field(DROP, st.fixed_dictionaries({"binary_data_size": st.integers(-1, 2000)}) | json_values)
        ),
    }
    document = {
        "id": draw(field(DROP, st.text(max_size=5) | json_values)),
        "parameters": draw(field(DROP, json_values)),
        "inputs": draw(
            field([{k: v for k, v in tensor.items() if v is not DROP}], st.lists(json_values) | json_values)
        ),
        "outputs": draw(
            field(DROP, st.lists(st.fixed_dictionaries({"name": st.sampled_from(["labels", "x"])})))
        ),
    }
    return {key: value for key, value in document.items() if value is not DROP}


json_bodies = infer_documents().map(lambda document: json.dumps(document).encode())
raw_bodies = st.one_of(json_bodies, json_bodies, json_bodies, st.binary(max_size=300))
printable = st.characters(min_codepoint=33, max_codepoint=126)
binary_headers = st.none() | st.integers(-5, 400).map(str) | st.text(printable, max_size=4)


@pytest.fixture(scope="module")
def fuzzed_client(digits_model):
    settings_ = ServerSettings(max_images=4, max_body_bytes=64 * 1024)
    with TestClient(
        create_app(ModelRepository([digits_model]), settings_), raise_server_exceptions=False
    ) as client:
        yield client


def assert_clear_refusal_or_success(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body


def assert_still_serving(client) -> None:
    assert client.get("/v2/health/ready").json() == {"ready": True}
    response = client.post(INFER, json=infer_body(np.zeros((1, 3, 16, 16), np.uint8)))
    assert response.status_code == 200
    assert [o["name"] for o in response.json()["outputs"]] == ["probabilities", "labels"]


def test_malformed_infer_requests_never_get_a_5xx(fuzzed_client):
    @FUZZ
    @given(body=raw_bodies, header=binary_headers)
    def send(body: bytes, header: str | None) -> None:
        headers = {"content-type": "application/json"}
        if header is not None:
            headers["Inference-Header-Content-Length"] = header
        assert_clear_refusal_or_success(fuzzed_client.post(INFER, content=body, headers=headers))

    send()
    assert_still_serving(fuzzed_client)


def test_bad_uploads_never_get_a_5xx(fuzzed_client):
    png_header = b"\x89PNG\r\n\x1a\n"
    contents = st.binary(max_size=200) | st.binary(max_size=200).map(lambda tail: png_header + tail)
    uploads = st.lists(st.tuples(st.text(max_size=10), contents), max_size=6)

    @FUZZ
    @given(files=uploads, top_k=st.none() | st.integers(-3, 2000).map(str) | st.text(printable, max_size=3))
    def send(files: list[tuple[str, bytes]], top_k: str | None) -> None:
        params = {} if top_k is None else {"top_k": top_k}
        multipart = [("files", (name or "f", content, "application/octet-stream")) for name, content in files]
        if not multipart:
            multipart = [("note", (None, "no file"))]
        assert_clear_refusal_or_success(fuzzed_client.post("/predict", files=multipart, params=params))

    send()
    assert_still_serving(fuzzed_client)


# The OpenAPI document does not depend on the model served: read it from an app with none, so the
# operations are known when tests are collected; the requests go to the live server.
schema = schemathesis.openapi.from_dict(create_app(ModelRepository()).openapi())


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_documented_operation_resists_schema_driven_fuzzing(case, live_server):
    case.call_and_validate(base_url=live_server, checks=[not_a_server_error])


def test_the_fuzzed_server_still_answers(live_server):
    with httpx.Client(base_url=live_server) as http:
        assert_still_serving(http)
