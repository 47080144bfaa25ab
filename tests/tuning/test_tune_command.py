"""`crucible tune` as a user meets it: exit codes, one-line errors, the JSON result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crucible.cli import main
from crucible.tuning.study import local_storage, open_study
from tests.cli import assert_one_line_error, run_crucible
from tests.tuning.jobs import job_document, job_spec, write_job


def _tune(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_crucible("tune", *args, cwd=cwd)


def test_a_search_exits_0_and_prints_the_result_json(tmp_path):
    job = write_job(tmp_path / "job.yaml", job_document(maxTrials=2))
    proc = _tune("-f", str(job), "--json", "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["phase"] == "Succeeded" and result["studyName"] == "tiny-search"
    assert result["trialCounts"]["complete"] == 2
    assert {"number", "value", "params"} <= set(result["bestTrial"])
    output = tmp_path / "runs" / "tiny-search"  # the default output directory
    assert json.loads((output / "result.json").read_text())["bestTrial"] == result["bestTrial"]
    assert (output / "optimization_history.png").is_file() and (output / "param_importances.png").is_file()


def test_progress_and_the_best_parameters_go_to_stderr(tmp_path, capsys):
    job = write_job(tmp_path / "job.yaml", job_document(maxTrials=1))
    assert main(["tune", "-f", str(job), "--output", str(tmp_path / "out"), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "trial   0 (template) COMPLETE" in err
    assert "Best trial #0 (tiny-search-trial-000)" in err
    assert "hyperparameters.learningRate" in err and "Succeeded: reached maxTrials (1)" in err


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"searchSpace": {"hyperparameters.learningRate": {"type": "float", "low": 0.1, "high": 0.01}}}, ["spec.searchSpace.hyperparameters.learningRate.low", "must be less than high"]),
        ({"searchSpace": {"hyperparameters.learnRate": {"type": "float", "low": 0.01, "high": 0.1}}}, ["spec.searchSpace.hyperparameters.learnRate", "not a field of the template"]),
        ({"sampler": {"type": "bayes"}}, ["spec.sampler.type", "allowed values: 'tpe', 'random', 'cmaes' or 'grid'"]),
        ({"template": {"dataset": {"source": "imageFolder", "uri": "/no/such/dir"}}}, ["spec.template.dataset.uri", "is not a directory"]),
    ],
)  # fmt: skip
def test_invalid_input_exits_2_with_one_line_naming_the_field(tmp_path, overrides, fragments):
    job = write_job(tmp_path / "job.yaml", job_document(**overrides))
    assert_one_line_error(_tune("-f", str(job), cwd=tmp_path), *fragments)


def test_other_invalid_input_exits_2(tmp_path):
    assert_one_line_error(_tune("-f", "missing.yaml", cwd=tmp_path), "no such file")
    job = write_job(tmp_path / "job.yaml", job_document())
    assert_one_line_error(
        _tune("-f", str(job), "--workers", "0", cwd=tmp_path), "--workers: must be at least 1"
    )
    # An output directory that holds another search's study.
    open_study(
        job_spec(maxTrials=2, searchSpace={"model.dropout": {"type": "float", "low": 0, "high": 0.5}}),
        local_storage(tmp_path / "out"),
        "tiny-search",
    )
    assert_one_line_error(
        _tune("-f", str(job), "--output", "out", cwd=tmp_path), "was made for another search"
    )


def test_the_tuning_core_and_the_command_import_no_torch():
    modules = "space, algorithms, outcome, budget, summary, study, local, plots, display, command"
    code = f"import sys; from crucible.tuning import {modules}; import crucible.cli; crucible.cli.build_parser(); "
    code += "assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
