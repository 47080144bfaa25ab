"""`crucible serve` on the command line: its flags, and its refusal of artifacts it must not serve."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crucible.cli import build_parser


def crucible(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "crucible", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_serve_is_a_subcommand_with_the_documented_flags():
    args = build_parser().parse_args(
        [
            "serve",
            "--model",
            "runs/digits",
            "--name",
            "digits",
            "--host",
            "0.0.0.0",
            "--port",
            "9000",
            "--max-batch-size",
            "16",
            "--max-batch-delay-ms",
            "2.5",
            "--device",
            "cpu",
            "--max-body-bytes",
            "1000",
            "--max-images",
            "4",
            "--backend",
            "onnxruntime",
            "--quantize",
            "int8",
            "--no-batch-size-calibration",
        ]
    )
    assert (args.model, args.name, args.host, args.port) == ("runs/digits", "digits", "0.0.0.0", 9000)
    assert (args.max_batch_size, args.max_batch_delay_ms, args.device) == (16, 2.5, "cpu")
    assert (args.max_body_bytes, args.max_images) == (1000, 4)
    assert (args.backend, args.quantize) == ("onnxruntime", "int8")
    assert args.calibrate_batch_size is False


def test_defaults_listen_on_localhost_8080_with_batching_on():
    args = build_parser().parse_args(["serve", "--model", "m"])
    assert (args.host, args.port, args.device) == ("127.0.0.1", 8080, "auto")
    assert (args.max_batch_size, args.max_batch_delay_ms) == (32, 5.0)
    assert (args.backend, args.quantize) == ("auto", None)
    assert args.calibrate_batch_size is True


@pytest.mark.parametrize("flag", ["--max-batch-size", "--max-images", "--max-body-bytes"])
def test_limits_below_one_are_refused(flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["serve", "--model", "m", flag, "0"])
    assert exit_.value.code == 2
    assert "must be at least 1, got 0" in capsys.readouterr().err


def test_the_command_and_artifact_checks_import_nothing_heavy():
    probe = (
        "import sys, crucible.cli as cli, crucible.server.artifact; cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'fastapi', 'uvicorn', 'numpy') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


@pytest.fixture
def tampered_artifact(digits_artifact: Path, tmp_path: Path) -> Path:
    artifact = Path(shutil.copytree(digits_artifact, tmp_path / "tampered"))
    with (artifact / "model.pt").open("ab") as weights:
        weights.write(b"\0")
    return artifact


def test_a_checksum_mismatch_exits_2_with_one_clear_line(tampered_artifact):
    result = crucible("serve", "--model", str(tampered_artifact), "--port", "0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"error: checksum mismatch for {tampered_artifact / 'model.pt'}: model.json says sha256 "
    )
    assert "Traceback" not in result.stderr + result.stdout


def test_a_missing_weights_file_exits_2_with_one_clear_line(tampered_artifact):
    (tampered_artifact / "model.pt").unlink()
    result = crucible("serve", "--model", str(tampered_artifact))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: weights file {tampered_artifact / 'model.pt'} is missing"


def test_a_directory_that_is_no_artifact_exits_2(tmp_path):
    result = crucible("serve", "--model", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {tmp_path / 'model.json'} is missing: is {tmp_path} an artifact written by `crucible train`?"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_where_there_is_none_exits_2(digits_artifact):
    result = crucible("serve", "--model", str(digits_artifact), "--device", "cuda")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --device: cuda was asked for but no CUDA device is available"
