"""Real local searches: every trial trains a tiny CNN on digits (1-2 s a trial)."""

from __future__ import annotations

import json

import pytest

from crucible.cli import main
from crucible.tuning.local import RUNNER_LOCK, SearchBusy, _file_lock, run_search
from crucible.tuning.space import distributions
from crucible.tuning.study import local_storage, open_study
from tests.tuning.jobs import job_document, job_spec, write_job

LR = "hyperparameters.learningRate"


def _numbers(summary: dict) -> list[int]:
    return [trial["number"] for trial in summary["trials"]]


def test_a_small_search_completes_writes_its_outputs_and_resumes(tmp_path):
    output = tmp_path / "search"
    summary = run_search(job_spec(maxTrials=3), "tiny", output, device="cpu")

    assert (summary["phase"], summary["reason"]) == ("Succeeded", "reached maxTrials (3)")
    assert summary["trialCounts"] == {"complete": 3, "pruned": 0, "failed": 0, "running": 0, "waiting": 0}
    assert json.loads((output / "result.json").read_text()) == summary
    best, baseline = summary["bestTrial"], summary["baselineTrial"]
    assert set(best) >= {"number", "value", "params", "trainingRun"} and summary["studyName"] == "tiny"
    assert baseline["number"] == 0 and baseline["params"] == {LR: 0.01, "hyperparameters.batchSize": 64}
    assert best["value"] >= baseline["value"]
    assert best["trainingRun"] == f"tiny-trial-{best['number']:03d}"
    for name in ("study.db", "optimization_history.png", "param_importances.png"):
        assert (output / name).stat().st_size > 0
    for number in range(3):
        trial_dir = output / "trials" / f"{number:03d}"
        assert json.loads((trial_dir / "trial.json").read_text())["state"] == "COMPLETE"
        assert json.loads((trial_dir / "result.json").read_text())["phase"] == "Succeeded"
    assert summary["plots"]["importancesNote"] == "needs 4 complete trials, the study has 3"

    # The same command again: the search is over, nothing runs twice.
    again = run_search(job_spec(maxTrials=3), "tiny", output, device="cpu")
    assert _numbers(again) == [0, 1, 2]
    assert again["bestTrial"] == best

    # A larger budget continues the same study: one new trial, no second baseline.
    more = run_search(job_spec(maxTrials=4), "tiny", output, device="cpu")
    assert _numbers(more) == [0, 1, 2, 3]
    assert [t.get("baseline", False) for t in more["trials"]] == [True, False, False, False]
    assert more["trials"][3]["params"] not in [t["params"] for t in more["trials"][:3]]
    assert more["plots"]["importances"].keys() == {LR, "hyperparameters.batchSize"}


def test_pruning_stops_hopeless_trials_early(tmp_path):
    # Trial 0 (the template, lr 0.01) learns; lr 1e-6 cannot, and is stopped after its first epoch.
    spec = job_spec(
        searchSpace={LR: {"type": "categorical", "choices": [0.01, 0.000001]}},
        pruner={"type": "median", "nStartupTrials": 1},
        sampler={"type": "random", "seed": 3},
        maxTrials=4,
    )
    summary = run_search(spec, "bad", tmp_path, device="cpu")
    pruned = [t for t in summary["trials"] if t["state"] == "PRUNED"]
    assert pruned, summary["trials"]
    epochs = spec.template.hyperparameters.epochs
    for trial in pruned:
        assert trial["params"][LR] == 0.000001
        assert trial["epochs"] < epochs and trial["reason"].startswith("pruned after epoch")
        assert not (tmp_path / "trials" / f"{trial['number']:03d}" / "model.pt").exists()
    assert summary["phase"] == "Succeeded" and summary["bestTrial"]["params"][LR] == 0.01


def test_a_failed_gate_fails_its_trial_and_the_search_goes_on(tmp_path):
    # The debug gate's overfit-one-batch check fails at lr 1e-7: those trials fail, the others complete.
    spec = job_spec(
        template={"gates": {"debug": {"enabled": True, "overfitSteps": 30}}},
        searchSpace={LR: {"type": "categorical", "choices": [0.01, 0.0000001]}},
        sampler={"type": "grid", "seed": 0},
        maxTrials=5,
    )
    summary = run_search(spec, "gates", tmp_path, device="cpu")
    by_lr = {t["params"][LR]: t for t in summary["trials"]}
    assert by_lr[0.0000001]["state"] == "FAIL"
    assert by_lr[0.0000001]["reason"].startswith("debug gate failed")
    assert by_lr[0.01]["state"] == "COMPLETE"
    assert summary["phase"] == "Succeeded" and summary["reason"] == "visited every point of the grid (2)"


def test_every_trial_failing_fails_the_search_with_exit_code_1(tmp_path, capsys):
    document = job_document(
        template={"gates": {"debug": {"enabled": True, "overfitSteps": 1, "overfitLossBound": 1e-9}}},
        maxTrials=2,
    )
    job = write_job(tmp_path / "job.yaml", document)
    code = main(["tune", "-f", str(job), "--output", str(tmp_path / "out"), "--json", "--device", "cpu"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1
    assert summary["phase"] == "Failed" and summary["reason"].startswith(
        "no trial completed (2 failed, 0 pruned)"
    )
    assert all(t["reason"].startswith("debug gate failed") for t in summary["trials"])
    assert summary["bestTrial"] is None
    assert (tmp_path / "out" / "param_importances.png").is_file()  # drawn, saying why it is empty
    assert summary["plots"]["importancesNote"] == "needs 4 complete trials, the study has 0"


def test_a_trial_left_running_by_a_stopped_runner_is_finished_not_repeated(tmp_path):
    spec = job_spec(maxTrials=2)
    study = open_study(spec, local_storage(tmp_path), "stopped")
    left = study.ask(fixed_distributions=distributions(spec))  # the baseline; its runner "dies" here
    left.report(0.5, 1)
    summary = run_search(spec, "stopped", tmp_path, device="cpu")
    assert _numbers(summary) == [0, 1]
    assert summary["trials"][0]["state"] == "COMPLETE" and summary["trials"][0].get("baseline")
    assert summary["trialCounts"]["complete"] == 2


def test_one_runner_per_output_directory(tmp_path):
    with (
        _file_lock(tmp_path / RUNNER_LOCK),
        pytest.raises(SearchBusy, match="another `crucible tune` is using"),
    ):
        run_search(job_spec(), "busy", tmp_path, device="cpu")


@pytest.mark.slow
def test_worker_processes_share_the_study(tmp_path):
    summary = run_search(job_spec(maxTrials=4, parallelism=2), "workers", tmp_path, workers=2, device="cpu")
    assert summary["phase"] == "Succeeded"
    assert _numbers(summary) == [0, 1, 2, 3]
    assert len({json.dumps(t["params"], sort_keys=True) for t in summary["trials"]}) == 4
    study = open_study(job_spec(maxTrials=4, parallelism=2), local_storage(tmp_path), "workers")
    spans = [(t.datetime_start, t.datetime_complete) for t in study.trials]
    overlapping = max(sum(start <= s < end for start, end in spans) for s, _ in spans)
    assert overlapping == 2  # two at once, never more


def test_the_held_out_split_is_untouched_until_the_exported_model(tmp_path, monkeypatch):
    # The study's values come from the validation split; the held-out split is evaluated once per
    # trial, by the exported model, and only reported.
    from crucible.trainer import run as run_module

    evaluated_sizes = []
    real_evaluate = run_module.evaluate

    def counting(model, feed, *args, **kwargs):
        evaluated_sizes.append(len(feed.data))
        return real_evaluate(model, feed, *args, **kwargs)

    monkeypatch.setattr(run_module, "evaluate", counting)
    spec = job_spec(maxTrials=2)
    summary = run_search(spec, "clean", tmp_path, device="cpu")
    study = open_study(spec, local_storage(tmp_path), "clean")

    assert summary["objective"]["metric"] == "valBalancedAccuracy"
    for frozen in study.get_trials():
        result = json.loads((tmp_path / "trials" / f"{frozen.number:03d}" / "result.json").read_text())
        metrics = result["metrics"]
        epochs = spec.template.hyperparameters.epochs
        assert sorted(frozen.intermediate_values) == list(range(1, epochs + 1))
        assert frozen.intermediate_values[epochs] == pytest.approx(metrics["valBalancedAccuracy"], abs=1e-6)
        assert frozen.value == pytest.approx(metrics["valBalancedAccuracy"], abs=1e-6)
        assert "accuracy" in metrics  # the held-out figure, reported
    held_out_images = int(metrics["testImages"])
    assert held_out_images not in (metrics["trainImages"], metrics["validationImages"])
    assert evaluated_sizes.count(held_out_images) == 2, "one held-out evaluation per exported trial"
