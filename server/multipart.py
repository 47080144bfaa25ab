"""The files of a multipart/form-data body (RFC 7578), read from the body in memory.

`/predict` bodies are small (a few images, under the server's body limit, which is enforced before
they are read) and wanted whole: Starlette's form parser streams each file through a spooled
temporary file and an `UploadFile`, and cost more CPU per request than decoding a 224-pixel JPEG.
Here a body is cut at its boundaries: one slice per file, nothing else kept.
"""

from __future__ import annotations

from python_multipart.multipart import parse_options_header

from crucible.server.errors import InvalidInput, PayloadTooLarge

# Fields that are not files (a form's text inputs) are skipped, but not without end.
EXTRA_FIELDS = 16
_CRLF = b"\r\n"
_HEADERS_END = b"\r\n\r\n"


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a multipart/form-data Content-Type."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary", b"")
    if not boundary or len(boundary) > 200:  # RFC 2046: 1 to 70 characters; some clients send more
        raise InvalidInput("multipart body: the Content-Type header has no usable boundary parameter")
    return boundary


def _disposition(headers: bytes) -> dict[bytes, bytes] | None:
    """The parameters of a part's Content-Disposition header, None when it has none."""
    for line in headers.split(_CRLF):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"content-disposition":
            disposition, options = parse_options_header(value.strip())
            if disposition.lower() != b"form-data":
                raise InvalidInput(f"multipart body: a part's Content-Disposition is {disposition!r}")
            return options
    return None


def _filename(options: dict[bytes, bytes]) -> str:
    raw = options[b"filename"]
    # Browsers send UTF-8 file names; anything else still gets a readable name.
    return raw.decode("utf-8", errors="replace") or "upload"


def _is_delimiter_end(body: bytes, end: int) -> bool:
    """Whether a delimiter's bytes ending at `end` are a whole delimiter line: the closing `--`, or
    transport padding (spaces, tabs) and a line break. Otherwise they are content that merely starts
    like the boundary."""
    if body.startswith(b"--", end):
        return True
    line_end = body.find(_CRLF, end)
    return line_end >= 0 and not body[end:line_end].strip(b" \t")


def _next_delimiter(body: bytes, separator: bytes, start: int) -> int:
    """Where the next delimiter line after a part's content starts (its CRLF), or -1."""
    found = body.find(separator, start)
    while found >= 0 and not _is_delimiter_end(body, found + len(separator)):
        found = body.find(separator, found + 1)
    return found


def read_files(body: bytes, content_type: str, max_files: int) -> list[tuple[str, bytes]]:
    """The file parts of `body`, in order, as (file name, content); a part is a file when its
    Content-Disposition names a filename, as in an HTML form. More than `max_files` files is
    `PayloadTooLarge`; a body that is not multipart as its Content-Type says is `InvalidInput`."""
    delimiter = b"--" + boundary_of(content_type)
    # The first delimiter opens the body or follows a preamble's line break.
    start = 0 if body.startswith(delimiter) else body.find(_CRLF + delimiter)
    if start < 0:
        raise InvalidInput("multipart body: the boundary the Content-Type names is not in the body")
    position = body.index(delimiter, start) + len(delimiter)
    separator = _CRLF + delimiter
    files: list[tuple[str, bytes]] = []
    fields = 0
    if not _is_delimiter_end(body, position):
        raise InvalidInput("multipart body: a boundary is followed by other text on its line")
    while True:
        if body.startswith(b"--", position):
            return files  # the closing delimiter; an epilogue after it is ignored
        headers_start = body.index(_CRLF, position) + len(_CRLF)
        if body.startswith(_CRLF, headers_start):
            headers_end, content_start = headers_start, headers_start + len(_CRLF)
        else:
            headers_end = body.find(_HEADERS_END, headers_start)
            if headers_end < 0:
                raise InvalidInput("multipart body: a part's headers do not end (no blank line)")
            content_start = headers_end + len(_HEADERS_END)
        content_end = _next_delimiter(body, separator, content_start)
        if content_end < 0:
            raise InvalidInput("multipart body: it ends inside a part (no closing boundary)")
        options = _disposition(body[headers_start:headers_end])
        if options is None:
            raise InvalidInput("multipart body: a part has no Content-Disposition header")
        if b"filename" in options:
            if len(files) == max_files:
                raise PayloadTooLarge(f"files: more than {max_files} images in one request")
            files.append((_filename(options), body[content_start:content_end]))
        else:
            fields += 1
            if fields > max_files + EXTRA_FIELDS:
                raise InvalidInput(f"multipart body: more than {max_files + EXTRA_FIELDS} fields")
        position = content_end + len(separator)
