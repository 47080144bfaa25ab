"""`crucible serve --model s3://...`: a real server process downloads a real artifact from a real (moto) S3
server, verifies it as a local one and serves it; a tampered, missing or unreachable artifact is a
one-line refusal (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.cli import assert_one_line_error
from tests.s3_store import S3Store, environment_without_aws
from tests.server.helpers import MODEL_NAME, ServerProcess, infer_body, reference_probabilities

PREFIX = "crucible/ml/digits/uid-1"


def serve(model: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crucible", "serve", "--model", model, "--port", "0", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_serve_downloads_verifies_and_serves_an_s3_artifact(
    digits_artifact: Path, digit_pixels, s3_store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_store.new_bucket()
    uri = s3_store.put_directory(digits_artifact, bucket, PREFIX)
    for name, value in s3_store.env().items():
        monkeypatch.setenv(name, value)
    # No --cache-dir: the default is under the temporary directory, writable under a read-only root.
    monkeypatch.setenv("TMPDIR", str(tmp_path))

    server = ServerProcess("--model", uri, "--port", "0")
    base_url = server.wait_until_serving()
    try:
        pixels, _ = digit_pixels
        with httpx.Client(base_url=base_url) as http:
            assert http.get("/v2/health/ready").json() == {"ready": True}
            infer = http.post(f"/v2/models/{MODEL_NAME}/infer", json=infer_body(pixels))
    finally:
        assert server.stop() == 0, server.output
    assert infer.status_code == 200, infer.text
    probabilities = next(o for o in infer.json()["outputs"] if o["name"] == "probabilities")
    expected = reference_probabilities(digits_artifact, pixels)
    np.testing.assert_allclose(np.reshape(probabilities["data"], (10, 10)), expected, atol=1e-5)
    cached = tmp_path / "crucible-models" / bucket / PREFIX
    # The verified ONNX copy that the default backend runs comes too; the int8 copy, not asked for, not.
    assert sorted(path.name for path in cached.iterdir()) == ["model.json", "model.onnx", "model.pt"]
    assert (cached / "model.pt").read_bytes() == (digits_artifact / "model.pt").read_bytes()


def test_a_tampered_s3_artifact_is_refused(digits_artifact: Path, s3_store: S3Store, tmp_path: Path) -> None:
    bucket = s3_store.new_bucket()
    uri = s3_store.put_directory(digits_artifact, bucket, PREFIX)
    weights = bytearray((digits_artifact / "model.pt").read_bytes())
    weights[-100] ^= 0xFF
    s3_store.put(bucket, f"{PREFIX}/model.pt", bytes(weights))

    proc = serve(uri, {**os.environ, **s3_store.env()}, "--cache-dir", str(tmp_path / "cache"))

    assert_one_line_error(proc, f"checksum mismatch for {uri}/model.pt", "model.json says sha256")


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("no such bucket", ["cannot download s3://crucible-no-such-bucket/x/model.json", "no such"]),
        ("no such artifact", ["/nothing/here/model.json", "no such object"]),
        ("no credentials", ["cannot download", "no S3 credentials: set AWS_ACCESS_KEY_ID"]),
        ("not a bucket name", ["--model", "'Bad_Bucket' in 's3://Bad_Bucket/x' is not a bucket name"]),
    ],
)
def test_an_unreachable_s3_artifact_is_a_one_line_refusal(
    case: str, fragments: list[str], s3_store: S3Store, tmp_path: Path
) -> None:
    env = {**environment_without_aws(dict(os.environ)), **s3_store.env(credentials=case != "no credentials")}
    model = {
        "no such bucket": "s3://crucible-no-such-bucket/x",
        "no such artifact": f"s3://{s3_store.new_bucket()}/nothing/here",
        "no credentials": f"s3://{s3_store.new_bucket()}/x",
        "not a bucket name": "s3://Bad_Bucket/x",
    }[case]

    assert_one_line_error(serve(model, env, "--cache-dir", str(tmp_path / "cache")), *fragments)
