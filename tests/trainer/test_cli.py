"""`crucible train` as a user meets it: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.cli import assert_one_line_error, run_crucible
from tests.conftest import FAST_SPEC


def _write_run(path: Path, spec: dict, **document) -> Path:
    body = {
        "apiVersion": "crucible.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "cli"},
        "spec": spec,
    }
    body.update(document)
    path.write_text(yaml.safe_dump(body))
    return path


def test_train_json_succeeds_and_writes_the_artifact(tmp_path):
    run_file = _write_run(tmp_path / "run.yaml", FAST_SPEC)
    proc = run_crucible("train", "-f", str(run_file), "--json", "--output", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["phase"] == "Succeeded"
    assert result["artifact"]["uri"] == (tmp_path / "out").resolve().as_uri()
    assert len(json.dumps(result, separators=(",", ":"))) < 4096
    for name in ("model.pt", "model.json", "result.json", "report.png"):
        assert (tmp_path / "out" / name).is_file()


def test_train_defaults_output_to_runs_name_and_prints_a_summary(tmp_path):
    spec = {**FAST_SPEC, "gates": {"debug": {"enabled": False}, "crossValidation": {"enabled": False}}}
    proc = run_crucible("train", "-f", str(_write_run(tmp_path / "run.yaml", spec)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Succeeded" in proc.stderr and "accuracy" in proc.stderr
    assert (tmp_path / "runs" / "cli" / "model.json").is_file()


def test_failed_gate_exits_1_with_the_reason(tmp_path):
    spec = {**FAST_SPEC, "hyperparameters": {"optimizer": "sgd", "learningRate": 50.0}}
    proc = run_crucible("train", "-f", str(_write_run(tmp_path / "run.yaml", spec)), "--json", cwd=tmp_path)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["reason"].startswith("debug gate failed: overfitOneBatch")


def test_invalid_yaml_is_one_line(tmp_path):
    (tmp_path / "run.yaml").write_text("spec: [unclosed\n")
    assert_one_line_error(run_crucible("train", "-f", "run.yaml", cwd=tmp_path), "invalid YAML", "line")


def test_unknown_field_names_the_field_and_the_allowed_ones(tmp_path):
    spec = {"model": {"architecture": "tiny_cnn", "layers": 3}}
    assert_one_line_error(
        run_crucible("train", "-f", str(_write_run(tmp_path / "r.yaml", spec)), cwd=tmp_path),
        "spec.model.layers: unknown field",
        "architecture, pretrainedWeights, dropout",
    )


def test_unknown_architecture_lists_the_allowed_values(tmp_path):
    spec = {"model": {"architecture": "vgg_giant"}}
    assert_one_line_error(
        run_crucible("train", "-f", str(_write_run(tmp_path / "r.yaml", spec)), cwd=tmp_path),
        "spec.model.architecture: 'vgg_giant' is not allowed",
        "mobilenet_v3_small",
        "tiny_cnn",
    )


def test_missing_dataset_path_is_named(tmp_path):
    spec = {"dataset": {"source": "imageFolder", "uri": str(tmp_path / "nowhere")}}
    assert_one_line_error(
        run_crucible("train", "-f", str(_write_run(tmp_path / "r.yaml", spec)), cwd=tmp_path),
        "spec.dataset.uri",
        "nowhere",
    )


def test_wrong_kind_and_missing_file_are_one_line(tmp_path):
    assert_one_line_error(
        run_crucible("train", "-f", str(_write_run(tmp_path / "r.yaml", {}, kind="Pod")), cwd=tmp_path),
        "kind: 'Pod'",
    )
    assert_one_line_error(run_crucible("train", "-f", "absent.yaml", cwd=tmp_path), "no such file")


def test_trainer_entry_point_writes_the_termination_message(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps(FAST_SPEC))
    log = tmp_path / "termination-log"
    proc = subprocess.run(
        [sys.executable, "-m", "crucible.trainer.cli", "--spec", str(tmp_path / "spec.json"), "--name", "job",
         "--output", str(tmp_path / "out"), "--artifact-uri", "pvc://models/job", "--termination-log", str(log)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    message = json.loads(log.read_text())
    assert message == json.loads(json.dumps(json.loads((tmp_path / "out" / "result.json").read_text())))
    assert message["artifact"]["uri"] == "pvc://models/job"
    assert len(log.read_text()) < 4096
