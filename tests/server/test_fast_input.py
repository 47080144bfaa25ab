"""The fast input path (a JSON request's numeric data read without a Python object per value) and binary
outputs (the binary tensor data extension, in responses)."""

from __future__ import annotations

import array
import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    values = numbers.parse(text, "FP32", (12,))
    np.testing.assert_array_equal(values, np.array([i / 3 for i in range(12)], dtype=np.float32))


def json_parser_reading(text: bytes) -> list[int] | None:
    """The integers in 0..255 the JSON parser reads from an array's text, or None."""
    try:
        values = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(values, list) or not all(type(v) is int and 0 <= v <= 255 for v in values):
        return None
    return values


@pytest.mark.parametrize(
    "text",
    [
        b"[0]",
        b"[255]",
        b"[7,10,100,0,255,99]",
        b"[7, 10, 100, 0, 255, 99]",  # json.dumps
        b"[ 7,\n  10,\r\n\t100]",
        orjson.dumps(np.random.default_rng(0).integers(0, 256, 3 * 224 * 224).tolist()),
    ],
    ids=["zero", "max", "compact", "json-dumps", "indented", "224x224"],
)
def test_uint8_text_is_read_with_numpy_as_the_json_parser_reads_it(text: bytes) -> None:
    expected = json_parser_reading(text)
    values = numbers.read_uint8(memoryview(text), (len(expected),))
    assert values is not None and values.dtype == np.uint8
    assert values.tolist() == expected


@pytest.mark.parametrize(
    "text",
    [
        b"[01,2]",
        b"[1,,2]",
        b"[,1]",
        b"[1,]",
        b"[1 2]",
        b"[1000]",
        b"[256]",
        b"[999]",
        b"[1.5]",
        b"[-1]",
        b"[1e2]",
        b"[1,2 ]",
        b"[1 ,2]",
        b"[1,\x0c2]",  # a form feed is not JSON whitespace
        b"[[1],2]",
        b"[]",
        b"[1,2",
        b'["1"]',
        b"[true]",
    ],
)
def test_uint8_text_the_numpy_reader_skips_is_left_to_the_json_parser(text: bytes) -> None:
    assert numbers.read_uint8(memoryview(text), (2,)) is None
    assert numbers.read_uint8(memoryview(text), (1,)) is None


def test_a_uint8_array_of_another_length_than_the_shape_is_not_read() -> None:
    assert numbers.read_uint8(memoryview(b"[1,2,3]"), (4,)) is None


def edited(text: bytes, edits: list[tuple[int, int, str]]) -> bytes:
    """The text with each (kind, position, character) edit applied: 0 replaces, 1 inserts, 2 deletes."""
    chars = bytearray(text)
    for kind, position, char in edits:
        at = position % (len(chars) + 1)
        if kind == 0 and at < len(chars):
            chars[at] = ord(char)
        elif kind == 1:
            chars.insert(at, ord(char))
        elif at < len(chars):
            del chars[at]
    return bytes(chars)


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(st.integers(0, 255), min_size=1, max_size=12),
    st.sampled_from([b",", b", ", b",\n "]),
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 64), st.sampled_from("0123456789, \n\t\x0c.-e[]x")),
        max_size=3,
    ),
)
def test_whatever_the_numpy_reader_reads_the_json_parser_reads_the_same(
    values: list[int], separator: bytes, edits: list[tuple[int, int, str]]
) -> None:
    text = edited(b"[" + separator.join(str(v).encode() for v in values) + b"]", edits)
    expected = json_parser_reading(text)
    for count in {len(values), len(expected or ())}:
        read = numbers.read_uint8(memoryview(text), (count,))
        assert read is None or read.tolist() == expected


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(0, 255), min_size=1, max_size=64), st.sampled_from([b",", b", ", b",\n  "]))
def test_every_array_clients_write_is_read_by_numpy(values: list[int], separator: bytes) -> None:
    text = b"[" + separator.join(str(v).encode() for v in values) + b"]"
    assert numbers.read_uint8(memoryview(text), (len(values),)).tolist() == values


def json_parser_nested_reading(text: bytes, shape: tuple[int, ...]) -> list[int] | None:
    """The integers in 0..255 the JSON parser reads from an array's text, flattened, when the array
    is flat or nested exactly to `shape`; None otherwise."""

    def flatten(value: object, axes: tuple[int, ...]) -> list[int] | None:
        if not axes:
            return [value] if type(value) is int and 0 <= value <= 255 else None
        if not isinstance(value, list) or len(value) != axes[0]:
            return None
        flat: list[int] = []
        for item in value:
            part = flatten(item, axes[1:])
            if part is None:
                return None
            flat += part
        return flat

    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return flatten(document, shape) or flatten(document, (int(np.prod(shape)),))


@pytest.mark.parametrize("shape", [(1, 3, 2, 2), (2, 3, 2, 2), (1, 1, 1, 1), (3, 1), (2, 5)])
@pytest.mark.parametrize(
    "dumps", [orjson.dumps, lambda value: json.dumps(value).encode()], ids=["compact", "json-dumps"]
)
def test_uint8_data_nested_to_the_shape_is_read_with_numpy(shape: tuple[int, ...], dumps) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    values = numbers.read_uint8(memoryview(dumps(pixels.tolist())), shape)
    assert values is not None
    np.testing.assert_array_equal(values, pixels.ravel())


def test_a_request_with_nested_data_takes_the_fast_path() -> None:
    pixels = np.arange(24, dtype=np.uint8).reshape(2, 3, 2, 2)
    raw = orjson.dumps({"inputs": [{**tensor(data=pixels.tolist()), "shape": [2, 3, 2, 2]}], "id": "n"})
    _, data_text = numbers.cut_data_array(raw)
    assert bytes(data_text) == orjson.dumps(pixels.tolist())
    assert numbers.read_uint8(data_text, (2, 3, 2, 2)) is not None
    request = decode_infer_request(raw, IMAGE, 4)
    np.testing.assert_array_equal(request.images, pixels)
    assert request.id == "n"


@pytest.mark.parametrize(
    "text",
    [
        b"[[[[0,1],[2,3]],[[4,5],[6,7]],[[8,9],[10,11]]]]",  # the right one, for reference below
        b"[[[[0,1],[2,3]],[[4,5],[6,7]],[[8,9,10,11]]]]",  # ragged
        b"[[[0,1,2,3],[4,5,6,7],[8,9,10,11]]]",  # nested to [1, 3, 4]
        b"[[[[0,1],[2,3]],[[4,5],[6,7]],[[8,9],[10],[11]]]]",
        b"[[[[0,1],[2,3]],[[4,5],[6,7]],[[8,9],[10,11]]],[]]",
        b"[[[[0,1],[2,3]],[[4,5],[6,7]],[[8,9],[10,11]]]",  # one "]" short
        b"[0,1,2,3,4,5,6,7,8,9,10,[11]]",
        b"[[[[0,1],[2,3]],[[4,5],[6,7]],[[8,9],[10,11],]]]",
        b"[[[[0,1],[2,3]],[[4,5],[6,7]],[[8,9],[10,11]]]]]",
    ],
)
def test_data_nested_to_another_shape_is_left_to_the_json_parser(text: bytes) -> None:
    read = numbers.read_uint8(memoryview(text), (1, 3, 2, 2))
    expected = json_parser_nested_reading(text, (1, 3, 2, 2))
    assert (read is None) == (expected is None)
    if read is not None:
        assert read.tolist() == expected


def test_ragged_nested_data_gets_the_same_error_through_the_fast_path() -> None:
    raw = orjson.dumps({"inputs": [tensor(data=[[[[0, 1], [2, 3]], [[4, 5], [6, 7]], [[8, 9, 10, 11]]]])]})
    with pytest.raises(InvalidInput) as refused:
        decode_infer_request(raw, IMAGE, 4)
    assert refused.value.message == "inputs[0].data: nested lists must follow the shape [1, 3, 2, 2]"


def test_fp32_data_nested_is_left_to_the_json_parser() -> None:
    # simdjson would flatten a ragged array to the right count.
    assert numbers.parse(memoryview(b"[[0.5],[1.5,2.5]]"), "FP32", (1, 3)) is None


def test_fp32_text_that_is_not_a_flat_array_is_left_to_the_json_parser() -> None:
    assert numbers.parse(memoryview(b"0.5"), "FP32", (1,)) is None
    assert numbers.parse(memoryview(b"[0.5]"), "FP32", (1,)).tolist() == [0.5]


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple),
    st.sampled_from([orjson.dumps, lambda value: json.dumps(value).encode()]),
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 96), st.sampled_from("0123456789, []\n\x01")), max_size=3
    ),
    st.randoms(use_true_random=False),
)
def test_whatever_the_numpy_reader_reads_nested_the_json_parser_reads_the_same(
    shape: tuple[int, ...], dumps, edits: list[tuple[int, int, str]], random
) -> None:
    pixels = np.array([random.randint(0, 255) for _ in range(int(np.prod(shape)))]).reshape(shape)
    text = edited(dumps(pixels.tolist()), edits)
    read = numbers.read_uint8(memoryview(text), shape)
    assert read is None or read.tolist() == json_parser_nested_reading(text, shape)
    if not edits:
        assert read is not None


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
