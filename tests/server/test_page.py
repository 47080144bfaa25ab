"""The page at `/` says what to upload, and every file it or the API docs need comes from this server."""

from __future__ import annotations

import json
import re

from crucible.server.page import class_list, human_bytes
from tests.server.helpers import MODEL_NAME


def test_the_page_says_what_to_upload_from_the_model_card(client):
    page = client.get("/").text
    assert (
        "Upload a picture of 0, 1, 2, 3, 4, 5, 6, 7, 8 or 9 (10 classes): PNG or JPEG, up to 32 MB each. "
        "The model sees it at 16\u00d716 pixels and answers with its 5 likeliest classes."
    ) in page
    config = json.loads(
        re.search(r'<script id="config" type="application/json">(.*?)</script>', page).group(1)
    )
    assert config == {
        "model": MODEL_NAME,
        "formats": ["PNG", "JPEG"],
        "mimeTypes": ["image/png", "image/jpeg"],
        "maxBytes": 32 * 1024 * 1024,
        "maxBytesText": "32 MB",
        "topK": 5,
        "capture": False,
        "classes": [str(d) for d in range(10)],
    }
    assert "capture-notice" not in page  # capture is off: nothing is kept, and the page says nothing of it
    assert 'accept="image/png,image/jpeg" multiple' in page


def test_long_class_lists_and_limits_read_plainly():
    assert class_list(["cat"]) == "cat"
    assert class_list(["cat", "dog", "fox"]) == "cat, dog or fox"
    assert class_list([f"c{i}" for i in range(20)]).endswith("c10, c11 and 8 more")
    assert [human_bytes(n) for n in (512, 1536, 32 * 1024 * 1024, 3 * 1024**3)] == [
        "512 bytes",
        "1.5 KB",
        "32 MB",
        "3 GB",
    ]


def test_the_page_and_the_api_docs_load_nothing_from_other_hosts(client):
    assert client.get("/favicon.svg").headers["content-type"] == "image/svg+xml"
    for path in ("/", "/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200, path
        links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert links, path
        assert not [link for link in links if "//" in link], f"{path} loads from another host: {links}"
        for link in links:
            if link.startswith("/static-offline-docs/") or link == "/favicon.svg":
                assert client.get(link).status_code == 200, link
    assert "SwaggerUIBundle" in client.get("/static-offline-docs/swagger-ui-bundle.js").text
