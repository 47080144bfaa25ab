"""Reading a JSON request's numeric `data` array without a Python object per value.

A 224x224 RGB image is 150,528 numbers. Parsed as JSON, each becomes a Python object in a list
before it is packed into an array; for FP32 (a new float object per value) that is most of the cost
of a request. Here the array's text is cut out of the body (`cut_data_array`) and read on its own
(`parse`): UINT8, flat or nested to the input's shape, by whole-array numpy operations over the
text's bytes (`read_uint8`); flat FP32 by simdjson, a SIMD JSON parser, straight into a numeric
buffer. Anything irregular yields None, and the caller falls back to the general JSON parse, which
names what is wrong; so does FP32 on a server without pysimdjson installed.
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np
import orjson

DATA_KEY = b'"data"'
# What stands in for the array in the body left to the JSON parser.
PLACEHOLDER = b"[]"
_WHITESPACE = b" \t\r\n"
_WHITESPACE_BYTES = np.frombuffer(_WHITESPACE, dtype=np.uint8)
_COMMA, _ZERO, _OPEN, _CLOSE = ord(","), ord("0"), ord("["), ord("]")
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
    when the body names `"data"` once and its value is an array. A numeric array, flat or nested, holds
    no quote and no brace, and only a comma and whitespace may follow it before the next key or the
    end of its object: so its text ends at the last `]` before the first `"` or `}` after it."""
    position = _after_key(body)
    if position is None:
        return None
    while position < len(body) and body[position] in _WHITESPACE:
        position += 1
    if position >= len(body) or body[position] != ord("["):
        return None
    ends = [found for found in (body.find(b'"', position), body.find(b"}", position)) if found >= 0]
    close = body.rfind(b"]", position, min(ends, default=len(body)))
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


def read_uint8(array_text: memoryview, shape: tuple[int, ...]) -> np.ndarray | None:
    """The integers in 0..255 of a JSON array's text, flat or nested to `shape`, in row-major order;
    read by a dozen numpy passes over its bytes instead of a Python object per value. None for
    anything but the forms clients write: digits, commas and brackets, with whitespace only after a
    comma or an opening bracket (`json.dumps` writes ", "). None means "not read here", never "wrong":
    the caller then parses the text as JSON, which reads or refuses what this skips."""
    raw = np.frombuffer(array_text, dtype=np.uint8)
    if len(raw) < 3 or raw[0] != _OPEN or raw[-1] != _CLOSE:
        return None
    first = 1
    while first < len(raw) and int(raw[first]) in _WHITESPACE:
        first += 1
    if raw[first] == _OPEN:
        return _read_nested(raw, shape)
    return _read_flat(raw, math.prod(shape))


def _read_flat(raw: np.ndarray, count: int) -> np.ndarray | None:
    # Two commas in place of the "[" give the first number its three places (see `_numbers`).
    text, digit, is_digit, is_comma = _padded(raw[1:])
    others = len(text) - 1 - np.count_nonzero(is_digit) - np.count_nonzero(is_comma)  # 1: the "]"
    if others and _whitespace(text, others, after=is_comma) is None:
        return None
    # Every comma follows a number (none doubled, none first), and so does the "]".
    if (is_comma[2:] & ~is_digit[1:-1]).any() or not is_digit[-2]:
        return None
    return _numbers(text, digit, is_digit, count)


def _read_nested(raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    text, digit, is_digit, is_comma = _padded(raw)
    is_open = text == _OPEN
    is_close = text == _CLOSE
    others = len(text) - sum(np.count_nonzero(kind) for kind in (is_digit, is_comma, is_open, is_close))
    separator = is_comma | is_open
    space = None
    if others:
        space = _whitespace(text, others, after=separator)
        if space is None:
            return None
        separator |= space
    # A number starts after a comma or "[" (whitespace follows only those) and ends before a comma
    # or "]".
    if (is_digit[1:] & ~(separator | is_digit)[:-1]).any() or (
        is_digit[:-1] & ~(is_comma | is_close | is_digit)[1:]
    ).any():
        return None
    # The commas and brackets, numbers and whitespace left out, must be those of an array of
    # `shape`; as numbers sit only between a comma or "[" and a comma or "]", one fills each place.
    kept = ~is_digit if space is None else ~(is_digit | space)
    if not np.array_equal(np.compress(kept[2:], text[2:]), _skeleton(shape)):
        return None
    return _numbers(text, digit, is_digit, math.prod(shape))


def _padded(body: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(two commas then `body`, each byte's digit value, which bytes are digits, which are commas)."""
    text = np.empty(len(body) + 2, dtype=np.uint8)
    text[:2] = _COMMA
    text[2:] = body
    digit = text - np.uint8(_ZERO)  # wraps around for the bytes below "0"
    return text, digit, digit < 10, text == _COMMA


def _whitespace(text: np.ndarray, others: int, after: np.ndarray) -> np.ndarray | None:
    """Where `text` has whitespace, when exactly `others` of its bytes are JSON whitespace (spaces, as
    `json.dumps` writes, or also tabs and line breaks) and each follows a byte marked in `after` or
    more whitespace; None otherwise."""
    space = text <= ord(" ")
    spaces = np.count_nonzero(space)
    if spaces != others:
        return None
    if (
        spaces != np.count_nonzero(text == ord(" "))
        and not np.isin(np.compress(space, text), _WHITESPACE_BYTES).all()
    ):
        return None
    if (space[1:] & ~(after | space)[:-1]).any():
        return None
    return space


def _numbers(text: np.ndarray, digit: np.ndarray, is_digit: np.ndarray, count: int) -> np.ndarray | None:
    """The numbers of `text` (two separators first, a "]" last) when there are `count` of them, none
    with more than three digits or a leading zero, none over 255.

    Each is its last digit, plus ten times the one before when that is a digit, plus a hundred times
    the one before that when both are: one formula over all positions, read off at last digits."""
    if (is_digit[3:] & is_digit[2:-1] & is_digit[1:-2] & is_digit[:-3]).any() or (
        (text[1:-1] == _ZERO) & is_digit[2:] & ~is_digit[:-2]
    ).any():
        return None
    digit *= is_digit
    value = digit[2:].astype(np.uint16)
    value += digit[1:-1] * np.uint16(10)
    value += (digit[:-2] * is_digit[1:-1]) * np.uint16(100)
    values = value.take(np.flatnonzero(is_digit[2:-1] > is_digit[3:]))
    if len(values) != count or values.max() > 255:
        return None
    return values.astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _skeleton(shape: tuple[int, ...]) -> np.ndarray:
    """The commas and brackets of a JSON array nested to `shape`, in order."""
    text = "[" + "," * (shape[-1] - 1) + "]"
    for size in reversed(shape[:-1]):
        text = "[" + ",".join([text] * size) + "]"
    return np.frombuffer(text.encode(), dtype=np.uint8)


def parse(array_text: memoryview, datatype: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The numbers of a JSON array's text as a flat array of `datatype` (UINT8: integers in 0..255,
    FP32: numbers), as many as `shape` holds; None when they are not that.

    UINT8 goes through `read_uint8`, flat or nested, and what it leaves through orjson and
    `bytearray` (the ints 0..255 are cached objects, so the list costs a pointer per value; the
    conversion refuses what is not an integer in 0..255). FP32 goes through simdjson when flat (a
    Python float per value costs about 100 ns; simdjson reads them at a few ns each; it would also
    flatten a ragged nested array, so those are left to the JSON parser)."""
    count = math.prod(shape)
    if count < 1:
        return None
    if datatype == "UINT8":
        fast = read_uint8(array_text, shape)
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
    text = bytes(array_text)
    # Flat arrays only: simdjson flattens any nesting, a ragged one too. Nested FP32 data goes to the
    # JSON parser: checking its commas and brackets against the shape with numpy first (as for
    # UINT8) cost as much as parsing it with orjson, over the 3 MB of a 224x224 image.
    if not (text.startswith(b"[") and text.endswith(b"]")) or text.find(b"[", 1) >= 0:
        return None
    try:
        floats = np.frombuffer(parser.parse(text).as_buffer(of_type="d"), dtype=np.float64)
    except (ValueError, TypeError, RuntimeError):  # simdjson's kinds for bad JSON and wrong types
        return None
    if len(floats) != count:
        return None
    with np.errstate(over="ignore"):  # beyond float32's range: inf, refused as not finite
        return floats.astype(np.float32)
