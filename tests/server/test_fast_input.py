"""The fast input path (a JSON request's numeric data read without a Python object per value) and binary
outputs (the binary tensor data extension, in responses)."""

from __future__ import annotations

import array

import numpy as np
import orjson
import pytest

from crucible.server import numbers
from crucible.server.codec import decode_infer_request, encode_infer_response
from crucible.server.errors import InvalidInput
from tests.server.helpers import MODEL_NAME, infer_body

IMAGE = (3, 2, 2)


def tensor(datatype: str = "UINT8", data: object = None, **fields) -> dict:
    values = list(range(12)) if data is None else data
    return {"name": "input", "datatype": datatype, "shape": [1, 3, 2, 2], "data": values, **fields}


def general_path(raw: bytes) -> np.ndarray:
    """What the JSON parser alone makes of the data: the reference the fast path must equal."""
    document = orjson.loads(raw)
    data = document["inputs"][0]["data"]
    if document["inputs"][0]["datatype"] == "UINT8":
        return np.frombuffer(bytearray(data), dtype=np.uint8)
    return np.frombuffer(array.array("f", data), dtype=np.float32)


@pytest.mark.parametrize(
    "raw",
    [
        orjson.dumps({"inputs": [tensor()]}),
        b'{ "inputs" : [ { "data" : [ 0 , 1,2,\n3, 4, 5, 6, 7, 8, 9, 10, 255 ] , "name": "input", '
        b'"datatype": "UINT8", "shape": [1, 3, 2, 2] } ] }',
        orjson.dumps({"inputs": [tensor("FP32", [i / 7 - 1 for i in range(12)])]}),
        b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 2, 2], '
        b'"data": [1e-3, -2.5E2, 0, -0, 3.25, 1, 2, 3, 4, 5, 6, 7]}]}',
        orjson.dumps(
            {"id": "data", "parameters": {"a": 1}, "inputs": [tensor()], "outputs": [{"name": "labels"}]}
        ),
    ],
    ids=["uint8", "uint8-spaced", "fp32", "fp32-exponents", "data-named-elsewhere"],
)
def test_numeric_data_is_read_exactly_as_the_json_parser_reads_it(raw: bytes) -> None:
    assert numbers.cut_data_array(raw) is not None  # the fast path is taken
    request = decode_infer_request(raw, IMAGE, 4)
    expected = general_path(raw)
    assert request.images.dtype == expected.dtype
    assert request.images.shape == (1, 3, 2, 2)
    np.testing.assert_array_equal(request.images.ravel(), expected)


def test_the_fast_path_reads_fp32_without_a_python_float_per_value() -> None:
    text = memoryview(orjson.dumps([i / 3 for i in range(12)]))
    values = numbers.parse(text, "FP32", 12)
    np.testing.assert_array_equal(values, np.array([i / 3 for i in range(12)], dtype=np.float32))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            orjson.dumps({"inputs": [tensor(data=[*range(11), 256])]}),
            "inputs[0].data: UINT8 values must be integers in 0..255",
        ),
        (
            orjson.dumps({"inputs": [tensor(data=[*range(11), 1.5])]}),
            "inputs[0].data: UINT8 values must be integers in 0..255",
        ),
        (
            orjson.dumps({"inputs": [tensor(data=[*range(11), "7"])]}),
            "inputs[0].data: UINT8 values must be integers in 0..255",
        ),
        (
            orjson.dumps({"inputs": [tensor(data=list(range(11)))]}),
            "inputs[0].data: expected 12 values for shape [1, 3, 2, 2], got 11",
        ),
        (
            orjson.dumps({"inputs": [tensor("FP32", [*range(11), "x"])]}),
            "inputs[0].data: FP32 values must be finite numbers",
        ),
        (
            b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 2, 2], "data": [1e39, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}]}',
            "inputs[0].data: FP32 values must be finite numbers",
        ),
        (
            orjson.dumps({"inputs": [tensor(data=[[0, 1], [2]])]}),
            "inputs[0].data: nested lists must follow the shape [1, 3, 2, 2]",
        ),
    ],
    ids=[
        "uint8-over-255",
        "uint8-fraction",
        "uint8-string",
        "too-few",
        "fp32-string",
        "fp32-overflow",
        "ragged",
    ],
)
def test_irregular_data_gets_the_same_error_as_before(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_infer_request(raw, IMAGE, 4)
    assert refused.value.message == message


def test_a_second_data_key_is_left_to_the_json_parser() -> None:
    raw = orjson.dumps({"inputs": [tensor()], "parameters": {"data": [9] * 12}})
    assert numbers.cut_data_array(raw) is None
    assert decode_infer_request(raw, IMAGE, 4).images.ravel().tolist() == list(range(12))


def _split_binary_response(raw: bytes, json_length: int) -> tuple[dict, bytes]:
    return orjson.loads(raw[:json_length]), raw[json_length:]


def test_binary_data_output_sends_every_output_as_raw_bytes_after_the_json() -> None:
    raw_request = orjson.dumps({"inputs": [tensor()], "parameters": {"binary_data_output": True}})
    request = decode_infer_request(raw_request, IMAGE, 4)
    assert request.binary_outputs == {"probabilities", "labels"}
    probabilities = np.array([[0.25, 0.75], [0.875, 0.125]], dtype=np.float32)
    raw, json_length = encode_infer_response("m", "v", request, probabilities, ["cat", "dog"])
    header, tail = _split_binary_response(raw, json_length)
    assert [output.get("parameters") for output in header["outputs"]] == [
        {"binary_data_size": 16},
        {"binary_data_size": 4 + 3 + 4 + 3},
    ]
    assert all("data" not in output for output in header["outputs"])
    assert np.frombuffer(tail[:16], dtype="<f4").tolist() == [0.25, 0.75, 0.875, 0.125]
    assert tail[16:] == b"\x03\x00\x00\x00dog\x03\x00\x00\x00cat"


def test_one_output_can_be_asked_for_as_binary_and_the_other_as_json() -> None:
    raw_request = orjson.dumps(
        {
            "inputs": [tensor()],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "labels"}],
        }
    )
    request = decode_infer_request(raw_request, IMAGE, 4)
    probabilities = np.array([[0.5, 0.5]], dtype=np.float32)
    raw, json_length = encode_infer_response("m", "v", request, probabilities, ["a", "b"])
    header, tail = _split_binary_response(raw, json_length)
    assert header["outputs"][1] == {"name": "labels", "datatype": "BYTES", "shape": [1], "data": ["a"]}
    assert np.frombuffer(tail, dtype="<f4").tolist() == [0.5, 0.5]


def test_a_binary_output_flag_that_is_not_a_boolean_is_refused() -> None:
    raw = orjson.dumps({"inputs": [tensor()], "parameters": {"binary_data_output": "yes"}})
    with pytest.raises(InvalidInput) as refused:
        decode_infer_request(raw, IMAGE, 4)
    assert refused.value.message == "parameters.binary_data_output: expected true or false, got 'yes'"


def test_binary_outputs_over_http_carry_the_json_length_header(client, digit_pixels) -> None:
    pixels, _ = digit_pixels
    body = infer_body(pixels[:3], parameters={"binary_data_output": True})
    response = client.post(f"/v2/models/{MODEL_NAME}/infer", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    json_length = int(response.headers["inference-header-content-length"])
    header, tail = _split_binary_response(response.content, json_length)
    probabilities = np.frombuffer(tail[: 3 * 10 * 4], dtype="<f4").reshape(3, 10)
    plain = client.post(f"/v2/models/{MODEL_NAME}/infer", json=infer_body(pixels[:3])).json()
    np.testing.assert_allclose(probabilities.ravel(), plain["outputs"][0]["data"], rtol=1e-6)
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 3 * 10 * 4}


def test_a_plain_request_still_gets_plain_json(client, digit_pixels) -> None:
    response = client.post(f"/v2/models/{MODEL_NAME}/infer", json=infer_body(digit_pixels[0][:1]))
    assert response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
