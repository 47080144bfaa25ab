"""Open Inference Protocol v2 (REST) tensors: decode an infer request, encode its response.

Two body forms are read, as KServe and Triton define them:
- JSON: `{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "data"}], "outputs"?}`, with
  `data` flat in row-major order or nested to match the shape.
- Binary tensor data extension: the header `Inference-Header-Content-Length: n` says the first n
  bytes are that JSON; an input with `"parameters": {"binary_data_size": k}` and no `data` takes its
  k raw little-endian bytes from what follows, in input order.

Every error names the field that is wrong. On the hot path a flat numeric `data` array is cut out
of the body before orjson parses the rest, and read on its own (see `numbers`: UINT8 by numpy over the
text's bytes, FP32 by simdjson straight into a buffer, with no Python object per value); anything
irregular takes the general path, where orjson parses everything, and `bytearray` (UINT8) and
`array.array` (FP32) convert the list in C and refuse out-of-range values and non-numbers with an
error naming the field. Binary data is viewed as it is.

Outputs are JSON, or raw bytes after a JSON header with the binary extension: the request's
`parameters.binary_data_output: true` asks it for every output, an output's
`parameters.binary_data: true` for that one (FP32 as little-endian floats, BYTES as 4-byte
little-endian lengths each followed by the UTF-8 text).
"""

from __future__ import annotations

import array
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson

from crucible.server import numbers
from crucible.server.errors import InvalidInput, PayloadTooLarge

INPUT_NAME = "input"
PROBABILITIES = "probabilities"
LABELS = "labels"
OUTPUT_NAMES = (PROBABILITIES, LABELS)
BINARY_HEADER = "inference-header-content-length"

# datatype -> (numpy dtype of the tensor, the C-speed conversion of a flat JSON list to its bytes)
DATATYPES: dict[str, tuple[np.dtype, Callable[[list], bytearray | array.array]]] = {
    "FP32": (np.dtype("<f4"), lambda values: array.array("f", values)),
    # bytearray() checks integer types and 0..255 as it goes, ten times faster than array("B").
    "UINT8": (np.dtype("u1"), bytearray),
}
_VALUES = {"FP32": "finite numbers", "UINT8": "integers in 0..255"}


@dataclass(frozen=True)
class InferRequest:
    """A decoded, validated request: images are raw UINT8 pixels or normalized FP32, [N, 3, H, W]."""

    id: str | None
    images: np.ndarray
    outputs: tuple[str, ...] = OUTPUT_NAMES
    # The outputs to send as raw bytes after the JSON header (binary tensor data extension).
    binary_outputs: frozenset[str] = frozenset()


def _shape_text(shape: tuple[int, ...] | list) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _parse_json(text: bytes | memoryview) -> dict:
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise InvalidInput(f"request body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidInput("request body must be a JSON object")
    return document


def _split_binary(body: bytes, header_value: str | None) -> tuple[dict, memoryview | None]:
    """The JSON part of the body and, with the binary extension, the raw bytes after it."""
    if header_value is None:
        return _parse_json(body), None
    try:
        json_length = int(header_value)
    except ValueError:
        raise InvalidInput(
            f"Inference-Header-Content-Length: expected a byte count, got {header_value!r}"
        ) from None
    if not 0 < json_length <= len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length: {json_length} is outside the body's {len(body)} bytes"
        )
    view = memoryview(body)
    return _parse_json(view[:json_length]), view[json_length:]


# Error messages are built only when a check fails: this runs once per request.


def _checked_shape(shape: object, image_shape: tuple[int, int, int], max_images: int) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(type(d) is int for d in shape):
        raise InvalidInput(
            f"inputs[0].shape: expected a list of integers {_expected(image_shape)}, got {shape!r}"
        )
    if len(shape) != 4 or tuple(shape[1:]) != image_shape or shape[0] < 1:
        raise InvalidInput(
            f"inputs[0].shape: expected {_expected(image_shape)} with N >= 1, got {_shape_text(shape)}"
        )
    if shape[0] > max_images:
        raise PayloadTooLarge(f"inputs[0].shape: {shape[0]} images in one request; the limit is {max_images}")
    return tuple(shape)


def _expected(image_shape: tuple[int, int, int]) -> str:
    return "[N, " + ", ".join(str(d) for d in image_shape) + "]"


def _flatten_nested(data: list, shape: tuple[int, ...]) -> list:
    """Nested lists that follow the shape exactly, flattened in row-major order."""
    level = [data]
    for size in shape:
        if not all(isinstance(item, list) and len(item) == size for item in level):
            raise InvalidInput(f"inputs[0].data: nested lists must follow the shape {_shape_text(shape)}")
        level = [value for item in level for value in item]
    return level


def _from_json_data(data: object, datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(data, list):
        raise InvalidInput("inputs[0].data: expected a list of numbers")
    count = math.prod(shape)
    if data and isinstance(data[0], list):
        data = _flatten_nested(data, shape)
    if len(data) != count:
        raise InvalidInput(
            f"inputs[0].data: expected {count} values for shape {_shape_text(shape)}, got {len(data)}"
        )
    dtype, convert = DATATYPES[datatype]
    try:
        values = np.frombuffer(convert(data), dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"inputs[0].data: {datatype} values must be {_VALUES[datatype]}") from None
    return values.reshape(shape)


def _from_binary(
    parameters: dict, binary: memoryview | None, datatype: str, shape: tuple[int, ...]
) -> np.ndarray:
    if binary is None:
        raise InvalidInput(
            "inputs[0].parameters.binary_data_size: binary data needs the "
            "Inference-Header-Content-Length header"
        )
    size = parameters["binary_data_size"]
    dtype, _ = DATATYPES[datatype]
    expected = math.prod(shape) * dtype.itemsize
    if type(size) is not int or size != expected:
        raise InvalidInput(
            f"inputs[0].parameters.binary_data_size: expected {expected} bytes for {datatype} "
            f"{_shape_text(shape)}, got {size!r}"
        )
    if len(binary) != expected:
        raise InvalidInput(f"binary data: expected {expected} bytes after the JSON header, got {len(binary)}")
    # A writable copy: torch refuses to wrap read-only memory without a warning.
    return np.frombuffer(binary, dtype=dtype).reshape(shape).copy()


def _flag(parameters: object, key: str, field: str) -> bool:
    if parameters is None:
        return False
    if not isinstance(parameters, dict):
        raise InvalidInput(f"{field}: expected an object")
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{field}.{key}: expected true or false, got {value!r}")
    return value


def _requested_outputs(document: dict) -> tuple[tuple[str, ...], frozenset[str]]:
    """The outputs asked for, in order, and those of them to send as binary data."""
    all_binary = _flag(document.get("parameters"), "binary_data_output", "parameters")
    requested = document.get("outputs")
    if requested is None:
        return OUTPUT_NAMES, frozenset(OUTPUT_NAMES) if all_binary else frozenset()
    if not isinstance(requested, list):
        raise InvalidInput('outputs: expected a list of {"name": ...} objects')
    names, binary = [], set()
    for index, output in enumerate(requested):
        name = output.get("name") if isinstance(output, dict) else None
        if name not in OUTPUT_NAMES:
            raise InvalidInput(
                f"outputs[{index}].name: unknown output {name!r}; this model's outputs are "
                + ", ".join(OUTPUT_NAMES)
            )
        names.append(name)
        if _flag(output.get("parameters"), "binary_data", f"outputs[{index}].parameters") or (
            all_binary and "binary_data" not in (output.get("parameters") or {})
        ):
            binary.add(name)
    if not names:
        return OUTPUT_NAMES, frozenset(OUTPUT_NAMES) if all_binary else frozenset()
    return tuple(names), frozenset(binary)


def _input_tensor(document: dict) -> dict:
    request_id, parameters = document.get("id"), document.get("parameters")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("id: expected a string")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInput("parameters: expected an object")
    inputs = document.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidInput("inputs: expected a list of input tensors")
    if len(inputs) != 1:
        raise InvalidInput(f"inputs: expected exactly 1 input tensor, got {len(inputs)}")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise InvalidInput("inputs[0]: expected an object with name, shape, datatype, data")
    if tensor.get("name") != INPUT_NAME:
        raise InvalidInput(
            f"inputs[0].name: unknown input {tensor.get('name')!r}; "
            f"this model has one input named {INPUT_NAME!r}"
        )
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InvalidInput(
            f"inputs[0].datatype: {datatype!r} is not supported; allowed: " + ", ".join(DATATYPES)
        )
    return tensor


def decode_infer_request(
    body: bytes,
    image_shape: tuple[int, int, int],
    max_images: int,
    binary_header: str | None = None,
) -> InferRequest:
    """Validate an infer request for a model taking images of `image_shape` (C, H, W)."""
    if binary_header is None:
        fast = _decode_numeric_json(body, image_shape, max_images)
        if fast is not None:
            return fast
    document, binary = _split_binary(body, binary_header)
    tensor = _input_tensor(document)
    datatype = tensor["datatype"]
    shape = _checked_shape(tensor.get("shape"), image_shape, max_images)
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("inputs[0].parameters: expected an object")
    if "binary_data_size" in parameters:
        if "data" in tensor:
            raise InvalidInput("inputs[0]: give either data or parameters.binary_data_size, not both")
        images = _from_binary(parameters, binary, datatype, shape)
    else:
        if binary:
            raise InvalidInput(
                "binary data: the body has bytes after the JSON header but no input declares binary_data_size"
            )
        if "data" not in tensor:
            raise InvalidInput("inputs[0].data: missing")
        images = _from_json_data(tensor["data"], datatype, shape)
    if datatype == "FP32" and not np.isfinite(images).all():
        raise InvalidInput("inputs[0].data: FP32 values must be finite numbers")
    return InferRequest(document.get("id"), images, *_requested_outputs(document))


def _decode_numeric_json(
    body: bytes, image_shape: tuple[int, int, int], max_images: int
) -> InferRequest | None:
    """The request, when its one input's `data` is a flat array of well-formed numbers: the array's
    text is read apart from the rest of the body. None when anything is irregular: the general path
    then decodes the body, and names what is wrong."""
    cut = numbers.cut_data_array(body)
    if cut is None:
        return None
    rest, data_text = cut
    try:
        document = orjson.loads(rest)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    tensor = _input_tensor(document)
    # The placeholder must sit where the input's data is, or the array cut was some other "data".
    if tensor.get("data") != [] or "parameters" in tensor:
        return None
    datatype = tensor["datatype"]
    shape = _checked_shape(tensor.get("shape"), image_shape, max_images)
    values = numbers.parse(data_text, datatype, shape)
    if values is None:
        return None
    images = values.reshape(shape)
    if datatype == "FP32" and not np.isfinite(images).all():
        raise InvalidInput("inputs[0].data: FP32 values must be finite numbers")
    return InferRequest(document.get("id"), images, *_requested_outputs(document))


def _labels_bytes(labels: list[str]) -> bytes:
    """BYTES elements as the binary extension lays them out: a 4-byte little-endian length, the text."""
    parts = []
    for label in labels:
        encoded = label.encode()
        parts += [len(encoded).to_bytes(4, "little"), encoded]
    return b"".join(parts)


def encode_infer_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    probabilities: np.ndarray,
    classes: list[str],
    request_id: str | None = None,
) -> tuple[bytes, int | None]:
    """The response: probabilities FP32 [N, C] and the top label of each image, BYTES [N]. Returns the
    body and, when any output travels as binary data, the length of its JSON header (the value of
    Inference-Header-Content-Length); None for a plain JSON body. The response's `id` is the
    request's own, else `request_id`, else a fresh one."""
    count, num_classes = probabilities.shape
    outputs, binary_parts = [], []
    for name in request.outputs:
        binary = name in request.binary_outputs
        if name == PROBABILITIES:
            output: dict = {"name": PROBABILITIES, "datatype": "FP32", "shape": [count, num_classes]}
            if binary:
                data = np.ascontiguousarray(probabilities, dtype="<f4").tobytes()
            else:
                output["data"] = probabilities.reshape(-1)
        else:
            labels = [classes[i] for i in probabilities.argmax(axis=1).tolist()]
            output = {"name": LABELS, "datatype": "BYTES", "shape": [count]}
            if binary:
                data = _labels_bytes(labels)
            else:
                output["data"] = labels
        if binary:
            output["parameters"] = {"binary_data_size": len(data)}
            binary_parts.append(data)
        outputs.append(output)
    response = {
        "model_name": model_name,
        "model_version": model_version,
        "id": request.id if request.id is not None else (request_id or secrets.token_hex(16)),
        "outputs": outputs,
    }
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not binary_parts:
        return header, None
    return b"".join([header, *binary_parts]), len(header)
