"""Artifacts in an S3-compatible store: `crucible-train --artifact-uri s3://...` and `crucible train` with
`spec.output.uri: s3://...` upload a real artifact to a real (moto) S3 server; a failed upload fails the
run; missing credentials and malformed URIs are one-line errors before any training."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.cli import CRUCIBLE, assert_one_line_error
from tests.conftest import FAST_SPEC
from tests.s3_store import S3Store, environment_without_aws

# The verified ONNX copies the card names come along: a server may run them.
ARTIFACT_FILES = (
    "model.int8.onnx", "model.json", "model.onnx", "model.pt", "predictions.json", "report.png", "result.json"
)  # fmt: skip
CONTRACT_KEYS = {"phase", "reason", "gates", "metrics", "artifact", "fingerprints", "outcomes", "evaluation"}
# Trains in a second or two: the upload is what these tests are about.
QUICK_SPEC = {**FAST_SPEC, "gates": {"debug": {"enabled": False}, "crossValidation": {"enabled": False}}}


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def crucible_train(tmp_path: Path, spec: dict, artifact_uri: str, env: dict[str, str]):
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    command = [sys.executable, "-m", "crucible.trainer.cli", "--spec", "spec.json", "--name", "digits",
               "--output", "out", "--artifact-uri", artifact_uri, "--termination-log", "termination-log",
               "--device", "cpu"]  # fmt: skip
    return run(command, env, tmp_path)


def training_run_file(path: Path, spec: dict) -> Path:
    body = {
        "apiVersion": "crucible.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "cli"},
        "spec": spec,
    }
    path.write_text(yaml.safe_dump(body))
    return path


def test_the_trainer_uploads_every_file_of_the_artifact(tmp_path: Path, s3_store: S3Store) -> None:
    bucket = s3_store.new_bucket()
    prefix = "crucible/ml/digits/uid-1"
    uri = f"s3://{bucket}/{prefix}"

    proc = crucible_train(tmp_path, FAST_SPEC, uri, {**os.environ, **s3_store.env()})

    assert proc.returncode == 0, proc.stderr
    message = json.loads((tmp_path / "termination-log").read_text())
    assert message["phase"] == "Succeeded" and set(message) <= CONTRACT_KEYS
    weights = (tmp_path / "out" / "model.pt").read_bytes()
    assert message["artifact"] == {"uri": uri, "sha256": hashlib.sha256(weights).hexdigest()}
    assert s3_store.keys(bucket) == [f"{prefix}/{name}" for name in ARTIFACT_FILES]
    # What is in the bucket is what was written, byte for byte.
    for name in ARTIFACT_FILES:
        assert s3_store.get(bucket, f"{prefix}/{name}") == (tmp_path / "out" / name).read_bytes(), name
    assert json.loads(s3_store.get(bucket, f"{prefix}/result.json")) == message


def test_local_train_uploads_to_an_s3_output_uri(tmp_path: Path, s3_store: S3Store) -> None:
    bucket = s3_store.new_bucket()
    spec = {**QUICK_SPEC, "output": {"uri": f"s3://{bucket}/local/cli/"}}
    run_file = training_run_file(tmp_path / "run.yaml", spec)

    proc = run(
        [*CRUCIBLE, "train", "-f", str(run_file), "--json"], {**os.environ, **s3_store.env()}, tmp_path
    )

    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["artifact"]["uri"] == f"s3://{bucket}/local/cli"
    # Written locally first (runs/<name>, as without S3), then uploaded.
    assert (tmp_path / "runs" / "cli" / "model.pt").is_file()
    assert s3_store.keys(bucket) == [f"local/cli/{name}" for name in ARTIFACT_FILES]


def test_a_failed_upload_fails_the_run_with_a_one_line_reason(tmp_path: Path, s3_store: S3Store) -> None:
    uri = "s3://crucible-no-such-bucket/runs/digits"

    proc = crucible_train(tmp_path, QUICK_SPEC, uri, {**os.environ, **s3_store.env()})

    assert proc.returncode == 1, proc.stderr
    message = json.loads((tmp_path / "termination-log").read_text())
    assert message["phase"] == "Failed" and "artifact" not in message
    reason = message["reason"]
    assert reason.startswith(
        "artifact upload failed: cannot upload s3://crucible-no-such-bucket/runs/digits/"
    )
    assert "the bucket does not exist (NoSuchBucket)" in reason and "\n" not in reason
    # The figures of the training are kept; result.json says the same as the termination message.
    assert message["metrics"]["accuracy"] > 0.5
    assert json.loads((tmp_path / "out" / "result.json").read_text()) == message
    assert any(line.strip() == f"Failed: {reason}" for line in proc.stderr.splitlines()), proc.stderr


def test_missing_credentials_are_refused_before_training(tmp_path: Path, s3_store: S3Store) -> None:
    env = {**environment_without_aws(dict(os.environ)), **s3_store.env(credentials=False)}

    proc = crucible_train(tmp_path, QUICK_SPEC, f"s3://{s3_store.new_bucket()}/runs/digits", env)

    assert_one_line_error(proc, "no S3 credentials", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    assert not (tmp_path / "out" / "model.pt").exists()
    assert json.loads((tmp_path / "termination-log").read_text())["phase"] == "Failed"


def test_malformed_s3_uris_name_their_field(tmp_path: Path) -> None:
    assert_one_line_error(
        crucible_train(tmp_path, QUICK_SPEC, "s3://Not_A_Bucket/x", dict(os.environ)),
        "--artifact-uri",
        "is not a bucket name",
    )
    run_file = training_run_file(tmp_path / "run.yaml", {**QUICK_SPEC, "output": {"uri": "s3://models"}})
    assert_one_line_error(
        run([*CRUCIBLE, "train", "-f", str(run_file)], dict(os.environ), tmp_path),
        "spec.output.uri",
        "needs a bucket and a prefix: s3://<bucket>/<prefix>",
    )


def test_a_failed_gate_uploads_its_report_and_result_but_no_weights(
    tmp_path: Path, s3_store: S3Store
) -> None:
    bucket = s3_store.new_bucket()
    # An older run's weights in a reused output directory must not be published as this run's.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.pt").write_bytes(b"an older run's weights")
    diverging = {**FAST_SPEC, "hyperparameters": {"optimizer": "sgd", "learningRate": 50.0}}

    proc = crucible_train(
        tmp_path, diverging, f"s3://{bucket}/runs/diverging", {**os.environ, **s3_store.env()}
    )

    assert proc.returncode == 1, proc.stderr
    message = json.loads((tmp_path / "termination-log").read_text())
    assert message["reason"].startswith("debug gate failed: overfitOneBatch")
    assert s3_store.keys(bucket) == ["runs/diverging/report.png", "runs/diverging/result.json"]
