"""Reading a JSON request's numeric `data` array without a Python object per value.

A 224x224 RGB image is 150,528 numbers. Parsed as JSON, each becomes a Python object in a list
before it is packed into an array; for FP32 (a new float object per value) that is most of the cost
of a request. Here the array's text is cut out of the body (`cut_data_array`) and read on its own
(`parse`): UINT8 by whole-array numpy operations over the text's bytes (`read_uint8`), FP32 by
simdjson, a SIMD JSON parser, straight into a numeric buffer. Anything irregular yields None, and the
caller falls back to the general JSON parse, which names what is wrong; so does FP32 on a server
without pysimdjson installed.
"""

from __future__ import annotations

import threading

import numpy as np
import orjson

DATA_KEY = b'"data"'
# What stands in for the array in the body left to the JSON parser.
PLACEHOLDER = b"[]"
_WHITESPACE = b" \t\r\n"
_COMMA, _ZERO = ord(","), ord("0")
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


def read_uint8(array_text: memoryview, count: int) -> np.ndarray | None:
    """The `count` integers in 0..255 of a JSON array's text, read by a dozen numpy passes over its
    bytes instead of a Python object per value: about half the time of orjson and `bytearray` on a
    224x224 image. None for anything but the forms clients write: digits and commas, with whitespace
    only after a comma or the opening bracket (`json.dumps` writes ", "). None means "not read here",
    never "wrong": the caller then parses the text as JSON, which reads or refuses what this skips.

    Every number has at most three digits, so it is its last digit, plus ten times the one before
    when that is a digit, plus a hundred times the one before that when both are: one formula over
    all positions, read off at each number's last digit."""
    raw = np.frombuffer(array_text, dtype=np.uint8)
    if len(raw) < 3 or raw[0] != ord("[") or raw[-1] != ord("]"):
        return None
    # Two commas ahead of the first number give every number its three places; the brackets go.
    text = np.empty(len(raw), dtype=np.uint8)
    text[:2] = _COMMA
    text[2:] = raw[1:-1]
    digit = text - np.uint8(_ZERO)  # wraps around for the bytes below "0"
    is_digit = digit < 10
    is_comma = text == _COMMA
    others = len(text) - np.count_nonzero(is_digit) - np.count_nonzero(is_comma)
    if others:
        space = (text == ord(" ")) | (text == ord("\n")) | (text == ord("\r")) | (text == ord("\t"))
        if np.count_nonzero(space) != others or (space[1:] & ~(is_comma[:-1] | space[:-1])).any():
            return None
    if (
        not is_digit[-1]
        # Every comma follows a digit: none doubled, none first.
        or (is_comma[2:] & ~is_digit[1:-1]).any()
        or (is_digit[3:] & is_digit[2:-1] & is_digit[1:-2] & is_digit[:-3]).any()
        # No leading zeros: a "0" that starts a number is all of it.
        or ((text[1:-1] == _ZERO) & is_digit[2:] & ~is_digit[:-2]).any()
    ):
        return None
    digit *= is_digit
    value = digit[2:].astype(np.uint16)
    value += digit[1:-1] * np.uint16(10)
    value += (digit[:-2] * is_digit[1:-1]) * np.uint16(100)
    last_digit = np.empty(len(value), dtype=bool)
    np.greater(is_digit[2:-1], is_digit[3:], out=last_digit[:-1])
    last_digit[-1] = True
    values = value.take(np.flatnonzero(last_digit))
    if len(values) != count or values.max() > 255:
        return None
    return values.astype(np.uint8)


def parse(array_text: memoryview, datatype: str, count: int) -> np.ndarray | None:
    """The `count` numbers of a JSON array's text as a flat array of `datatype` (UINT8: integers in
    0..255, FP32: numbers); None when they are not that.

    FP32 goes through simdjson (a Python float per value costs about 100 ns; simdjson reads them at a
    few ns each). UINT8 goes through `read_uint8`, and what it leaves through orjson and `bytearray`
    (the ints 0..255 are cached objects, so the list costs a pointer per value; the conversion
    refuses what is not an integer in 0..255)."""
    if count < 1:
        return None
    if datatype == "UINT8":
        fast = read_uint8(array_text, count)
        if fast is not None:
            return fast
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
