"""Reading the files of a /predict body: what Starlette's form parser reads, and clear refusals."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from starlette.requests import Request

from crucible.server import multipart
from crucible.server.errors import InvalidInput, PayloadTooLarge


def encode(files: list, data: dict | None = None) -> tuple[bytes, str]:
    """A multipart body as httpx (and so requests-style clients) sends it, and its Content-Type."""
    request = httpx.Request("POST", "http://server/predict", files=files, data=data)
    return request.read(), request.headers["content-type"]


def starlette_files(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """The files Starlette's own form parser finds in the body, in order."""

    async def read() -> list[tuple[str, bytes]]:
        sent = False

        async def receive() -> dict:
            nonlocal sent
            message = {"type": "http.request", "body": b"" if sent else body, "more_body": False}
            sent = True
            return message

        scope = {"type": "http", "method": "POST", "headers": [(b"content-type", content_type.encode())]}
        form = await Request(scope, receive).form()
        files = [
            (value.filename, await value.read())
            for _, value in form.multi_items()
            if not isinstance(value, str)
        ]
        await form.close()
        return files

    return asyncio.run(read())


def test_files_are_read_in_order_with_their_names_and_text_fields_are_skipped():
    body, content_type = encode(
        [
            ("files", ("a.jpg", b"\xff\xd8first", "image/jpeg")),
            ("files", ("b.png", b"\x89PNGsecond", "image/png")),
        ],
        data={"note": "not a file"},
    )
    assert multipart.read_files(body, content_type, 10) == [
        ("a.jpg", b"\xff\xd8first"),
        ("b.png", b"\x89PNGsecond"),
    ]


def test_the_same_files_as_starlettes_parser_for_any_content():
    rng = np.random.default_rng(0)
    for trial in range(30):
        files = []
        for index in range(int(rng.integers(1, 5))):
            content = rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes()
            # Line breaks and dashes where a boundary could be mistaken for content.
            content = b"\r\n--" + content + b"\r\n--\r\n" if trial % 2 else content
            files.append(("files", (f"photo {index} é.jpg", content, "image/jpeg")))
        body, content_type = encode(files)
        assert multipart.read_files(body, content_type, 10) == starlette_files(body, content_type)


def test_a_quoted_boundary_a_preamble_and_an_epilogue_are_understood():
    body = (
        b"a preamble to ignore\r\n--edge\r\n"
        b'Content-Disposition: form-data; name="files"; filename="x.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
        b"pixels\r\n--edge--\r\nan epilogue"
    )
    assert multipart.read_files(body, 'multipart/form-data; boundary="edge"', 10) == [("x.jpg", b"pixels")]


def test_more_files_than_allowed_is_too_large():
    body, content_type = encode([("files", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(4)])
    with pytest.raises(PayloadTooLarge) as refused:
        multipart.read_files(body, content_type, 3)
    assert refused.value.message == "files: more than 3 images in one request"


def test_too_many_text_fields_are_refused():
    body, content_type = encode(
        [("files", ("a.jpg", b"x", "image/jpeg"))], data={f"f{i}": "v" for i in range(20)}
    )
    with pytest.raises(InvalidInput) as refused:
        multipart.read_files(body, content_type, 2)
    assert refused.value.message == "multipart body: more than 18 fields"


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (
            b"--b\r\n\r\nx\r\n--b--",
            "multipart/form-data",
            "the Content-Type header has no usable boundary parameter",
        ),
        (
            b"no boundary here",
            "multipart/form-data; boundary=b",
            "the boundary the Content-Type names is not in",
        ),
        (
            b'--b\r\nContent-Disposition: form-data; name="files"; filename="a"\r\n\r\ncut short',
            "multipart/form-data; boundary=b",
            "it ends inside a part (no closing boundary)",
        ),
        (
            b"--b\r\nContent-Type: image/jpeg\r\n\r\nx\r\n--b--",
            "multipart/form-data; boundary=b",
            "a part has no Content-Disposition header",
        ),
        (
            b'--b\r\nContent-Disposition: form-data; name="files"; filename="a"',
            "multipart/form-data; boundary=b",
            "a part's headers do not end (no blank line)",
        ),
        (
            b"--bjunk\r\n\r\nx\r\n--b--",
            "multipart/form-data; boundary=b",
            "a boundary is followed by other text",
        ),
    ],
)
def test_a_malformed_body_is_refused_with_what_is_wrong(body, content_type, message):
    with pytest.raises(InvalidInput) as refused:
        multipart.read_files(body, content_type, 10)
    assert refused.value.message.startswith("multipart body: " + message)


def test_content_that_only_starts_like_the_boundary_stays_content():
    body = (
        b'--b\r\nContent-Disposition: form-data; name="files"; filename="a"\r\n\r\n'
        b"x\r\n--bx\r\n--b-y\r\n--b  \r\n"
        b'Content-Disposition: form-data; name="files"; filename="c"\r\n\r\nz\r\n--b--'
    )
    assert multipart.read_files(body, "multipart/form-data; boundary=b", 10) == [
        ("a", b"x\r\n--bx\r\n--b-y"),
        ("c", b"z"),
    ]
    assert starlette_files(body, "multipart/form-data; boundary=b") == [
        ("a", b"x\r\n--bx\r\n--b-y"),
        ("c", b"z"),
    ]
