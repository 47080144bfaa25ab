"""Reading a JSON request's numeric `data` array without a Python object per value.

A 224x224 RGB image is 150,528 numbers. Parsed as JSON, each becomes a Python object in a list
before it is packed into an array; for FP32 (a new float object per value) that is most of the cost
of a request. Here the array's text is cut out of the body (`cut_data_array`) and read on its own
(`parse`): FP32 by simdjson, a SIMD JSON parser, straight into a numeric buffer. Anything irregular
yields None, and the caller falls back to the general JSON parse, which names what is wrong; so does
FP32 on a server without pysimdjson installed.
"""

from __future__ import annotations

import threading

import numpy as np
import orjson

DATA_KEY = b'"data"'
# What stands in for the array in the body left to the JSON parser.
PLACEHOLDER = b"[]"
_WHITESPACE = b" \t\r\n"
# simdjson's parser reuses its buffers from one document to the next, and is not thread-safe.
_local = threading.local()


def _after_key(body: bytes) -> int | None:
    """Where the value of the first `"data"` key starts. Inside a JSON string every quote is escaped,
    so `"data"` there is the string "data" itself: a key when a colon follows, a value otherwise."""
    key = body.find(DATA_KEY)
    while key >= 0:
        position = key + len(DATA_KEY)
        while position < len(body) and body[position] in _WHITESPACE:
            position += 1
        if position < len(body) and body[position] == ord(":"):
            return position + 1
        key = body.find(DATA_KEY, position)
    return None


def cut_data_array(body: bytes) -> tuple[bytes, memoryview] | None:
    """(the body with its `"data": [...]` array replaced by `[]`, the array's text with its brackets),
    when the body names `"data"` once and its value is an array. The text ends at the first `]`: a
    nested array is cut short, and its text then fails to parse as numbers."""
    position = _after_key(body)
    if position is None:
        return None
    while position < len(body) and body[position] in _WHITESPACE:
        position += 1
    if position >= len(body) or body[position] != ord("["):
        return None
    close = body.find(b"]", position)
    # Another "data" after the array: which one is the input's is the JSON parser's to say.
    if close < 0 or body.find(DATA_KEY, close) >= 0:
        return None
    rest = b"".join((body[:position], PLACEHOLDER, body[close + 1 :]))
    return rest, memoryview(body)[position : close + 1]


def _parser():
    parser = getattr(_local, "parser", None)
    if parser is None:
        try:
            import simdjson
        except ImportError:
            return None
        parser = _local.parser = simdjson.Parser()
    return parser


def parse(array_text: memoryview, datatype: str, count: int) -> np.ndarray | None:
    """The `count` numbers of a JSON array's text as a flat array of `datatype` (UINT8: integers in
    0..255, FP32: numbers); None when they are not that.

    FP32 goes through simdjson (a Python float per value costs about 100 ns; simdjson reads them at a
    few ns each). UINT8 goes through orjson and `bytearray`: the ints 0..255 are cached objects, so
    the list costs a pointer per value, and measured on a 224x224 image this is as fast as simdjson
    (about 1.6 ms each); its conversion also refuses what is not an integer in 0..255."""
    if count < 1:
        return None
    if datatype == "UINT8":
        try:
            values = np.frombuffer(bytearray(orjson.loads(array_text)), dtype=np.uint8)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            return None
        return values if len(values) == count else None
    parser = _parser()
    if datatype != "FP32" or parser is None:
        return None
    try:
        floats = np.frombuffer(parser.parse(bytes(array_text)).as_buffer(of_type="d"), dtype=np.float64)
    except (ValueError, TypeError, RuntimeError):  # simdjson's kinds for bad JSON and wrong types
        return None
    if len(floats) != count:
        return None
    with np.errstate(over="ignore"):  # beyond float32's range: inf, refused as not finite
        return floats.astype(np.float32)
