"""A real `crucible serve` process (uvicorn, real HTTP on 127.0.0.1): answers, batching, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from tests.server.helpers import (
    MODEL_NAME,
    ServerProcess,
    infer_body,
    metric_value,
    png_bytes,
    reference_probabilities,
)

INFER = f"/v2/models/{MODEL_NAME}/infer"


def test_health_and_metadata_over_http(live_server):
    with httpx.Client(base_url=live_server) as http:
        assert http.get("/v2/health/live").json() == {"live": True}
        assert http.get("/v2/health/ready").json() == {"ready": True}
        assert http.get(f"/v2/models/{MODEL_NAME}/ready").json() == {"name": MODEL_NAME, "ready": True}
        assert http.get(f"/v2/models/{MODEL_NAME}").json()["inputs"][0]["shape"] == [-1, 3, 16, 16]
        assert http.get("/").status_code == 200
        assert http.get("/docs").status_code == 200


def test_infer_and_predict_over_http_match_the_models_own_output(live_server, digits_artifact, digit_pixels):
    pixels, _ = digit_pixels
    expected = reference_probabilities(digits_artifact, pixels)
    with httpx.Client(base_url=live_server) as http:
        infer = http.post(INFER, json=infer_body(pixels))
        files = [("files", (f"{i}.png", png_bytes(pixels[i]), "image/png")) for i in range(10)]
        predict = http.post("/predict?top_k=1", files=files)
    assert infer.status_code == 200
    probabilities = next(o for o in infer.json()["outputs"] if o["name"] == "probabilities")
    np.testing.assert_allclose(np.reshape(probabilities["data"], (10, 10)), expected, atol=1e-5)
    assert [p["label"] for p in predict.json()["predictions"]] == [str(i) for i in expected.argmax(axis=1)]


def test_an_error_over_http_is_a_clear_4xx(live_server):
    with httpx.Client(base_url=live_server) as http:
        response = http.post(INFER, content=b'{"inputs": "none"}')
    assert (response.status_code, response.json()) == (
        400,
        {"error": "inputs: expected a list of input tensors"},
    )


def _infer_head(host: str, length: int) -> bytes:
    """The head of a JSON infer request whose body is `length` bytes."""
    return (
        f"POST {INFER} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def _post_at_once(base_url: str, bodies: list[bytes]) -> list[dict]:
    """Every body POSTed to the infer endpoint on a connection of its own, all written before any
    answer is read: they reach the server together, as a burst of clients does."""
    address = urlsplit(base_url)
    connections = [await asyncio.open_connection(address.hostname, address.port) for _ in bodies]
    for (_, writer), body in zip(connections, bodies, strict=True):
        writer.write(_infer_head(address.netloc, len(body)) + body)
    answers = []
    for reader, writer in connections:
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        answers.append({"status": int(status.split()[1]), **json.loads(await reader.readexactly(length))})
        writer.close()
    return answers


async def test_concurrent_requests_share_forward_passes(live_server, digit_pixels):
    pixels, _ = digit_pixels
    requests = 64
    async with httpx.AsyncClient(base_url=live_server) as http:
        before = (await http.get("/metrics")).text
        bodies = [
            json.dumps(infer_body(pixels[i % 10 : i % 10 + 1], id=str(i))).encode() for i in range(requests)
        ]
        answers = await _post_at_once(live_server, bodies)
        after = (await http.get("/metrics")).text
    assert all(answer["status"] == 200 for answer in answers)
    assert [answer["id"] for answer in answers] == [str(i) for i in range(requests)]

    def delta(name: str) -> float:
        return metric_value(after, name, model=MODEL_NAME) - metric_value(before, name, model=MODEL_NAME)

    assert delta("crucible_server_batch_size_sum") == requests
    forward_passes = delta("crucible_server_batch_size_count")
    assert forward_passes < requests, "every request ran its own forward pass"
    requests_counted = metric_value(
        after, "crucible_server_requests_total", endpoint="/v2/models/{name}/infer", code="200"
    ) - metric_value(before, "crucible_server_requests_total", endpoint="/v2/models/{name}/infer", code="200")
    assert requests_counted == requests


def _send_headers_and_part_of_body(base_url: str, body: bytes) -> socket.socket:
    address = urlsplit(base_url)
    connection = socket.create_connection((address.hostname, address.port), timeout=30)
    connection.sendall(_infer_head(address.netloc, len(body)) + body[:100])
    return connection


def _refuses_connections(base_url: str, within: float) -> bool:
    address = urlsplit(base_url)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection((address.hostname, address.port), timeout=1).close()
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _read_response(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight_stops_listening_and_exits_0(digits_artifact, digit_pixels):
    pixels, _ = digit_pixels
    server = ServerProcess("--model", str(digits_artifact), "--port", "0")
    base_url = server.wait_until_serving()
    body = json.dumps(infer_body(pixels[3:4], id="in-flight")).encode()
    connection = _send_headers_and_part_of_body(base_url, body)
    time.sleep(0.5)  # the server has read the request line and headers: the request is in flight

    server.terminate()
    assert _refuses_connections(base_url, within=10), "still accepting connections after SIGTERM"
    connection.sendall(body[100:])
    response = _read_response(connection)
    connection.close()

    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response[:300]
    assert json.loads(payload)["id"] == "in-flight"
    assert server.stop() == 0
    assert "stopped by SIGTERM after finishing the requests in flight" in server.output
    assert "Traceback" not in server.output
