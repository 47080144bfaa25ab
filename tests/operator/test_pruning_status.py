"""Lost pruning is visible (issue 12, defect 17): a trial's result says it could not reach its study, its
TrainingRun's status carries that, and its TuningJob gets a PruningAvailable condition."""

from __future__ import annotations

from crucible.api.result import Pruning, TrainResult
from crucible.api.tuningjob import TuningJobSpec
from crucible.operator.trainingrun.status import finished_status
from crucible.operator.tuningjob.plan import Verdict
from crucible.operator.tuningjob.status import pruning_condition, search_status
from tests.operator.test_status import COMPLETE, ended, job

ADDRESS = "grpc://crucible.crucible-system.svc:13000"
LOST = f"the study proxy {ADDRESS} could not be reached at start (ConnectionError: timed out)"


def trial(available: bool, reason: str = "") -> dict:
    return {"phase": "Succeeded", "pruning": {"available": available, "reason": reason or None}}


def test_a_trials_run_status_carries_whether_it_could_be_pruned() -> None:
    result = TrainResult(phase="Succeeded", pruning=Pruning(available=False, reason=LOST))
    written = finished_status(job(COMPLETE), ended(0, result.to_json()), 1, None).to_patch()
    assert written["pruning"] == {"available": False, "reason": LOST}

    plain = TrainResult(phase="Succeeded")  # not a trial: nothing said
    assert finished_status(job(COMPLETE), ended(0, plain.to_json()), 1, None).to_patch()["pruning"] is None


def test_pruning_is_unavailable_once_a_trial_trained_without_it_saying_how_many_and_where() -> None:
    statuses = [trial(True), {"phase": "Running"}, trial(False, LOST), trial(False, LOST)]
    found = pruning_condition(statuses, ADDRESS, 3)

    assert found is not None
    assert (found.type, found.status, found.reason) == ("PruningAvailable", "False", "StudyUnreachable")
    assert found.message.startswith(
        f"2 of 3 trials trained without pruning: their pods could not reach the study proxy at {ADDRESS}; "
        "set the chart's tuning.proxyAddress"
    )
    assert found.message.endswith(f"Latest: {LOST}")


def test_pruning_is_available_while_every_trial_reached_the_study_and_unsaid_before_any_reported() -> None:
    found = pruning_condition([trial(True), trial(True)], ADDRESS, 1)
    assert found is not None and (found.status, found.reason) == ("True", "StudyReachable")
    assert pruning_condition([{"phase": "Running"}, {}], ADDRESS, 1) is None


def test_the_tuning_jobs_conditions_include_pruning_once_known() -> None:
    spec = TuningJobSpec.model_validate(
        {
            "template": {"model": {"architecture": "tiny_cnn"}, "dataset": {"source": "digits"}},
            "searchSpace": {"hyperparameters.learningRate": {"type": "float", "low": 0.001, "high": 0.1}},
        }
    )
    searching = Verdict("Running", "1 of 10 trials finished")
    lost = pruning_condition([trial(False, LOST)], ADDRESS, 1)
    status = search_status("study", [], spec, searching, 1, {}, lost).to_patch()
    assert [item["type"] for item in status["conditions"]] == ["Ready", "Progressing", "PruningAvailable"]
    before = search_status("study", [], spec, searching, 1, {}).to_patch()
    assert [item["type"] for item in before["conditions"]] == ["Ready", "Progressing"]
