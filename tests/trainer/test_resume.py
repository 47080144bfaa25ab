"""A trainer killed mid-run (SIGKILL, as an evicted pod is) resumes from its checkpoint: finished
folds are not trained again, and the final weights are bit for bit those of an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from crucible.api.progress import progress_of
from crucible.trainer.checkpoint import CHECKPOINT_FILE
from crucible.trainer.run import RunContext, train
from tests.conftest import fast_spec

SPEC = fast_spec(
    dataset={"sampleFraction": 0.4, "imageSize": 12},
    hyperparameters={"epochs": 2},
    gates={
        "debug": {"enabled": False},
        "crossValidation": {"folds": 3, "epochs": 2, "minMean": 0.3, "maxStd": 0.5},
        # Two epochs per fold do not beat a linear model of 3x3 thumbnails; of 1x1 ones (mean colour) they do.
        "baseline": {"thumbnailSize": 1},
        "overfitting": {"enabled": False},
    },
)


def _crucible_train(tmp_path, output, *extra: str) -> subprocess.Popen:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(SPEC.to_dict()))
    command = [
        sys.executable,
        "-m",
        "crucible.trainer.cli",
        "--spec",
        str(spec_file),
        "--output",
        str(output),
    ]
    return subprocess.Popen([*command, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_at(process: subprocess.Popen, line_start: str) -> list[str]:
    """SIGKILL the trainer as soon as it logs a line starting with `line_start`."""
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.split("] ", 1)[-1].startswith(line_start):
            process.kill()
            break
    process.wait(timeout=60)
    return seen


def _log_text(lines: list[str]) -> str:
    return "".join(lines)


def test_a_killed_run_resumes_without_rerunning_finished_folds(tmp_path):
    whole = train(SPEC, RunContext(name="whole", output_dir=tmp_path / "whole", device="cpu"))
    assert whole.phase == "Succeeded", whole.reason
    output = tmp_path / "out"

    _kill_at(_crucible_train(tmp_path, output), "fold 1/3: balancedAccuracy")
    restarted = _kill_at(_crucible_train(tmp_path, output, "--restart"), "fold 2/3: balancedAccuracy")
    assert "fold 1/3 epoch 1/2" in _log_text(restarted), "--restart trains fold 1 again"
    assert "resuming" not in _log_text(restarted)
    assert (output / CHECKPOINT_FILE).is_file() and not (output / "model.pt").exists()

    # Killed right after fold 2's checkpoint, then again in the middle of fold 3's second epoch.
    resumed = _kill_at(_crucible_train(tmp_path, output), "fold 3/3 epoch 1/2")
    assert "folds 1-2/3 finished before the restart: not run again" in _log_text(resumed)
    # What the operator shows as status.progress, read from the log of the killed pod.
    assert progress_of(_log_text(resumed)) == {
        "stage": "Cross-validation",
        "fold": "3/3",
        "epoch": "1/2",
        "line": resumed[-1].split("] ", 1)[1].rstrip("\n"),
    }
    final = _crucible_train(tmp_path, output)
    log, _ = final.communicate(timeout=300)
    assert final.returncode == 0, log
    assert "fold 1/3" not in log and "fold 2/3" not in log and "fold 3/3 epoch 1/2" not in log
    assert "fold 3/3 epoch 2/2" in log

    result = json.loads((output / "result.json").read_text())
    assert len(result["gates"]["crossValidation"]["folds"]) == 3
    assert result["gates"]["crossValidation"]["folds"] == pytest.approx(
        whole.gates["crossValidation"].folds, abs=1e-6
    )
    assert result["gates"]["baseline"]["lift"] == pytest.approx(whole.gates["baseline"].lift, abs=1e-6)
    assert result["artifact"]["sha256"] == whole.artifact.sha256
    assert not (output / CHECKPOINT_FILE).exists(), "a finished run leaves no checkpoint behind"


def test_a_final_fit_stopped_mid_way_resumes_its_early_stopping_and_exports_the_same_best_weights(tmp_path):
    spec = fast_spec(
        dataset={"sampleFraction": 0.3, "imageSize": 12},
        hyperparameters={"epochs": 10, "earlyStopping": {"patience": 2, "metric": "accuracy"}},
        gates={"debug": {"enabled": False}, "crossValidation": {"enabled": False}},
    )
    figures = []
    whole = train(spec, RunContext(name="whole", output_dir=tmp_path / "whole", device="cpu"))
    assert whole.phase == "Succeeded", whole.reason
    stopped_at = whole.metrics["epochsTrained"]
    assert 5 < stopped_at < 10, "the validation accuracy peaks before the last epoch and training stops"

    class Evicted(Exception):
        pass

    def evicted_after_epoch_five(epoch, values):
        if epoch == 5:
            raise Evicted  # after epoch 5's checkpoint: the best epoch so far is behind it

    output = tmp_path / "out"
    with pytest.raises(Evicted):
        train(spec, RunContext(name="r", output_dir=output, device="cpu", on_epoch=evicted_after_epoch_five))
    assert (output / CHECKPOINT_FILE).is_file()

    def record(epoch, values):
        figures.append(epoch)

    resumed = train(spec, RunContext(name="r", output_dir=output, device="cpu", on_epoch=record))
    assert resumed.phase == "Succeeded", resumed.reason
    assert figures and figures[0] == 6, "epochs 1-5 are not trained again"
    assert resumed.metrics["epochsTrained"] == stopped_at
    assert resumed.gates["finalTraining"].passed
    assert resumed.artifact.sha256 == whole.artifact.sha256, "the best epoch's weights, as uninterrupted"
