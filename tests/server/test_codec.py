"""Open Inference Protocol requests and responses: what is accepted, and what each error says."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from crucible.server.codec import InferRequest, decode_infer_request, encode_infer_response
from crucible.server.errors import InvalidInput, PayloadTooLarge

IMAGE = (3, 2, 2)  # a tiny model input keeps the bodies readable


def body(**tensor_fields) -> bytes:
    tensor = {"name": "input", "datatype": "UINT8", "shape": [1, 3, 2, 2], "data": list(range(12))}
    tensor.update(tensor_fields)
    return orjson.dumps({"inputs": [tensor]})


def decode(raw: bytes, header: str | None = None, max_images: int = 4) -> InferRequest:
    return decode_infer_request(raw, IMAGE, max_images, header)


def test_flat_uint8_data_becomes_pixels_in_row_major_order():
    request = decode(body())
    assert request.images.dtype == np.uint8
    assert request.images.shape == (1, 3, 2, 2)
    assert request.images.ravel().tolist() == list(range(12))
    assert request.outputs == ("probabilities", "labels")


def test_nested_data_matching_the_shape_is_accepted():
    nested = np.arange(12).reshape(1, 3, 2, 2).tolist()
    assert decode(body(data=nested)).images.ravel().tolist() == list(range(12))


def test_fp32_data_is_kept_as_given():
    values = [i / 10 - 0.5 for i in range(12)]
    request = decode(body(datatype="FP32", data=values))
    assert request.images.dtype == np.float32
    np.testing.assert_allclose(request.images.ravel(), values, rtol=1e-6)


def test_id_and_requested_outputs_are_read():
    raw = orjson.dumps(
        {
            "id": "req-7",
            "inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 3, 2, 2], "data": [0] * 12}],
            "outputs": [{"name": "labels"}],
        }
    )
    request = decode(raw)
    assert request.id == "req-7"
    assert request.outputs == ("labels",)


def test_binary_tensor_data_extension():
    pixels = np.arange(24, dtype=np.uint8)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "UINT8",
                    "shape": [2, 3, 2, 2],
                    "parameters": {"binary_data_size": 24},
                }
            ]
        }
    )
    request = decode(header + pixels.tobytes(), header=str(len(header)))
    assert request.images.shape == (2, 3, 2, 2)
    assert request.images.ravel().tolist() == list(range(24))


def test_binary_fp32_is_little_endian():
    values = np.linspace(-1, 1, 12, dtype="<f4")
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [1, 3, 2, 2],
                    "parameters": {"binary_data_size": 48},
                }
            ]
        }
    )
    request = decode(header + values.tobytes(), header=str(len(header)))
    np.testing.assert_array_equal(request.images.ravel(), values)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            b"{not json",
            "request body is not valid JSON: unexpected character, expected a string key: line 1 column 2 (char 1)",
        ),
        (
            b"",
            "request body is not valid JSON: Input is a zero-length, empty document: line 1 column 1 (char 0)",
        ),
        (b"[1, 2]", "request body must be a JSON object"),
        (b"{}", "inputs: expected a list of input tensors"),
        (b'{"inputs": []}', "inputs: expected exactly 1 input tensor, got 0"),
        (b'{"inputs": [1]}', "inputs[0]: expected an object with name, shape, datatype, data"),
        (b'{"id": 5, "inputs": []}', "id: expected a string"),
        (b'{"parameters": [], "inputs": []}', "parameters: expected an object"),
        (
            body(name="pixels"),
            "inputs[0].name: unknown input 'pixels'; this model has one input named 'input'",
        ),
        (body(datatype="INT64"), "inputs[0].datatype: 'INT64' is not supported; allowed: FP32, UINT8"),
        (body(datatype=None), "inputs[0].datatype: None is not supported; allowed: FP32, UINT8"),
        (body(shape=[1, 3, 4, 4]), "inputs[0].shape: expected [N, 3, 2, 2] with N >= 1, got [1, 3, 4, 4]"),
        (body(shape=[3, 2, 2]), "inputs[0].shape: expected [N, 3, 2, 2] with N >= 1, got [3, 2, 2]"),
        (body(shape=[0, 3, 2, 2]), "inputs[0].shape: expected [N, 3, 2, 2] with N >= 1, got [0, 3, 2, 2]"),
        (body(shape="1,3,2,2"), "inputs[0].shape: expected a list of integers [N, 3, 2, 2], got '1,3,2,2'"),
        (
            body(shape=[1.0, 3, 2, 2]),
            "inputs[0].shape: expected a list of integers [N, 3, 2, 2], got [1.0, 3, 2, 2]",
        ),
        (body(data=list(range(11))), "inputs[0].data: expected 12 values for shape [1, 3, 2, 2], got 11"),
        (body(data="abc"), "inputs[0].data: expected a list of numbers"),
        (body(data=[[1, 2], [3]]), "inputs[0].data: nested lists must follow the shape [1, 3, 2, 2]"),
        (body(data=[256] + [0] * 11), "inputs[0].data: UINT8 values must be integers in 0..255"),
        (body(data=[-1] + [0] * 11), "inputs[0].data: UINT8 values must be integers in 0..255"),
        (body(data=[0.5] + [0] * 11), "inputs[0].data: UINT8 values must be integers in 0..255"),
        (body(datatype="FP32", data=["1"] + [0] * 11), "inputs[0].data: FP32 values must be finite numbers"),
        (body(datatype="FP32", data=[None] * 12), "inputs[0].data: FP32 values must be finite numbers"),
        (body(datatype="FP32", data=[1e39] + [0] * 11), "inputs[0].data: FP32 values must be finite numbers"),
        (body(data=None), "inputs[0].data: expected a list of numbers"),
        (
            orjson.dumps({"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 3, 2, 2]}]}),
            "inputs[0].data: missing",
        ),
        (
            orjson.dumps(
                {
                    "inputs": [
                        {"name": "input", "datatype": "UINT8", "shape": [1, 3, 2, 2], "data": [0] * 12}
                    ],
                    "outputs": [{"name": "logits"}],
                }
            ),
            "outputs[0].name: unknown output 'logits'; this model's outputs are probabilities, labels",
        ),
        (
            body(parameters={"binary_data_size": 12}),
            "inputs[0]: give either data or parameters.binary_data_size, not both",
        ),
    ],
)
def test_each_malformed_request_is_refused_with_a_message_naming_the_field(raw, message):
    with pytest.raises(InvalidInput) as refused:
        decode(raw)
    assert refused.value.message == message


def test_too_many_images_in_one_request_is_payload_too_large():
    with pytest.raises(PayloadTooLarge) as refused:
        decode(body(shape=[5, 3, 2, 2], data=[0] * 60), max_images=4)
    assert refused.value.message == "inputs[0].shape: 5 images in one request; the limit is 4"


def binary_header(size: int = 12) -> bytes:
    tensor = {
        "name": "input",
        "datatype": "UINT8",
        "shape": [1, 3, 2, 2],
        "parameters": {"binary_data_size": size},
    }
    return orjson.dumps({"inputs": [tensor]})


JSON_LENGTH = str(len(binary_header()))


@pytest.mark.parametrize(
    ("raw", "header", "message"),
    [
        (
            binary_header() + bytes(12),
            "abc",
            "Inference-Header-Content-Length: expected a byte count, got 'abc'",
        ),
        (
            binary_header() + bytes(12),
            "900",
            "Inference-Header-Content-Length: 900 is outside the body's 115 bytes",
        ),
        (
            binary_header(),
            None,
            "inputs[0].parameters.binary_data_size: binary data needs the Inference-Header-Content-Length header",
        ),
        (
            binary_header() + bytes(11),
            JSON_LENGTH,
            "binary data: expected 12 bytes after the JSON header, got 11",
        ),
        (
            binary_header(13) + bytes(12),
            JSON_LENGTH,
            "inputs[0].parameters.binary_data_size: expected 12 bytes for UINT8 [1, 3, 2, 2], got 13",
        ),
        (
            body() + bytes(4),
            str(len(body())),
            "binary data: the body has bytes after the JSON header but no input declares binary_data_size",
        ),
    ],
)
def test_binary_extension_errors_name_what_is_wrong(raw, header, message):
    with pytest.raises(InvalidInput) as refused:
        decode(raw, header=header)
    assert refused.value.message == message


def test_response_has_probabilities_and_labels_as_the_protocol_defines_them():
    probabilities = np.array([[0.1, 0.9], [0.8, 0.2]], dtype=np.float32)
    raw, json_length = encode_infer_response(
        "m", "v1", InferRequest("abc", np.zeros(1)), probabilities, ["cat", "dog"]
    )
    assert json_length is None  # plain JSON: no Inference-Header-Content-Length
    assert orjson.loads(raw) == {
        "model_name": "m",
        "model_version": "v1",
        "id": "abc",
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [2, 2], "data": [0.1, 0.9, 0.8, 0.2]},
            {"name": "labels", "datatype": "BYTES", "shape": [2], "data": ["dog", "cat"]},
        ],
    }


def test_response_without_a_request_id_gets_a_fresh_one_and_only_the_outputs_asked_for():
    probabilities = np.array([[0.3, 0.7]], dtype=np.float32)
    first = orjson.loads(
        encode_infer_response(
            "m", "v", InferRequest(None, np.zeros(1), ("labels",)), probabilities, ["a", "b"]
        )[0]
    )
    second = orjson.loads(
        encode_infer_response("m", "v", InferRequest(None, np.zeros(1)), probabilities, ["a", "b"])[0]
    )
    assert first["outputs"] == [{"name": "labels", "datatype": "BYTES", "shape": [1], "data": ["b"]}]
    assert first["id"] and second["id"] and first["id"] != second["id"]
