"""spec.retraining's decisions: which trigger fires and why the others do not, the run it creates, the
concurrency and history limits, and restart safety (derived from the runs themselves)."""

from __future__ import annotations

from datetime import UTC, datetime

from crucible.api.retraining import RETRAINED_FOR, RetrainingSpec
from crucible.operator.modeldeployment.retraining.plan import (
    LABELS_AT_START,
    TRIGGER,
    Capture,
    plan_retraining,
)

CREATED = "2026-12-01T00:00:00Z"
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
LABELS = {"crucible.dev/model": "digits"}


def policy(**fields: object) -> RetrainingSpec:
    template = {"metadata": {"labels": LABELS}, "spec": {"output": {"uri": "pvc://artifacts/retrained"}}}
    return RetrainingSpec.model_validate({"template": template, **fields})


def deployment(status: dict | None = None) -> dict:
    return {
        "apiVersion": "crucible.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "md", "namespace": "ns", "uid": "md-uid", "creationTimestamp": CREATED},
        "status": status or {},
    }


def run(index: int, phase: str | None = "Succeeded", labels_at: int = 0, created: str = CREATED) -> dict:
    return {
        "metadata": {
            "name": f"md-retrain-{index}",
            "creationTimestamp": created,
            "annotations": {TRIGGER: "NewLabels", LABELS_AT_START: str(labels_at)},
        },
        "status": {"phase": phase} if phase else {},
    }


def test_too_few_new_labels_create_nothing_and_say_how_many_are_missing() -> None:
    decision = plan_retraining(deployment(), policy(minNewLabels=300), [], Capture(labelled=120), NOW)
    assert decision.create is None and decision.fired is None
    assert decision.status.message == "no trigger fired: 120 new labels of 300 needed"
    assert decision.status.labelled == 120


def test_enough_new_labels_create_the_next_run_from_the_template() -> None:
    decision = plan_retraining(deployment(), policy(minNewLabels=300), [], Capture(labelled=300), NOW)
    manifest = decision.create
    assert manifest is not None and manifest["metadata"]["name"] == "md-retrain-1"
    assert manifest["metadata"]["labels"] == {
        **LABELS,
        RETRAINED_FOR: "md",
        "app.kubernetes.io/part-of": "crucible",
        "app.kubernetes.io/managed-by": "crucible-operator",
    }
    assert manifest["metadata"]["annotations"] == {TRIGGER: "NewLabels", LABELS_AT_START: "300"}
    (owner,) = manifest["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "ModelDeployment",
        "md",
        "md-uid",
        True,
    )
    # Each run writes below the template's output base: no run overwrites another's artifact.
    assert manifest["spec"]["output"]["uri"] == "pvc://artifacts/retrained/md-retrain-1"
    status = decision.status
    assert (status.last_trigger.reason, status.last_trigger.time) == ("NewLabels", NOW)
    assert (status.last_run, status.labels_at_last_run, status.active_runs) == (
        "md-retrain-1",
        300,
        ["md-retrain-1"],
    )
    assert status.message == "created md-retrain-1: 300 new labels (minNewLabels 300)"


def test_labels_count_from_the_last_run_even_when_its_status_was_never_written() -> None:
    # The operator created md-retrain-1 at 300 labels and stopped before writing status.retraining.
    runs = [run(1, phase="Running", labels_at=300)]
    decision = plan_retraining(
        deployment(), policy(minNewLabels=300, maxConcurrent=2), runs, Capture(350), NOW
    )
    assert decision.create is None
    assert decision.status.message == "no trigger fired: 50 new labels of 300 needed"
    assert decision.status.labels_at_last_run == 300 and decision.status.active_runs == ["md-retrain-1"]
    # 300 more: the next run is number 2, counted from 600.
    decision = plan_retraining(
        deployment(), policy(minNewLabels=300, maxConcurrent=2), runs, Capture(600), NOW
    )
    assert decision.create["metadata"]["name"] == "md-retrain-2"
    assert decision.status.labels_at_last_run == 600


def test_a_trigger_waits_while_max_concurrent_runs_are_unfinished() -> None:
    runs = [run(1, phase="Running", labels_at=0)]
    decision = plan_retraining(deployment(), policy(minNewLabels=10), runs, Capture(labelled=40), NOW)
    assert decision.create is None
    assert (
        decision.waiting
        == decision.status.message
        == ("NewLabels fired and waits: 1 retraining run(s) not finished (md-retrain-1); maxConcurrent 1")
    )


def test_the_schedule_fires_once_per_scheduled_time_since_the_last_run() -> None:
    daily = policy(schedule="0 3 * * *")
    quiet = plan_retraining(deployment(), daily, [], None, NOW)
    assert quiet.create is None
    assert quiet.status.message == "no trigger fired: schedule: next at 2026-12-01T03:00:00+00:00"
    at_three = datetime(2026, 12, 1, 3, 0, 20, tzinfo=UTC)
    fired = plan_retraining(deployment(), daily, [], None, at_three)
    assert fired.create is not None and fired.fired.reason == "Schedule"
    assert fired.status.last_trigger.message == "the schedule '0 3 * * *' fired at 2026-12-01T03:00:00+00:00"
    # The run it created counts as the last one: the schedule waits for tomorrow.
    runs = [run(1, created="2026-12-01T03:00:20Z")]
    later = plan_retraining(deployment(), daily, runs, None, datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    assert later.create is None
    assert later.status.message == "no trigger fired: schedule: next at 2026-12-02T03:00:00+00:00"


def test_an_unreachable_capture_endpoint_is_said_and_the_schedule_still_fires() -> None:
    both = policy(schedule="0 1 * * *", minNewLabels=5)
    decision = plan_retraining(deployment(), both, [], "no ready server to ask", NOW)
    assert decision.fired.reason == "Schedule" and decision.create is not None
    quiet = plan_retraining(deployment(), policy(minNewLabels=5), [], "no ready server to ask", NOW)
    assert quiet.status.message == "no trigger fired: capture endpoint: no ready server to ask"


def test_drift_fires_once_per_served_model() -> None:
    drift = policy(drift={"threshold": 0.2, "minSamples": 100})
    served = deployment({"currentModel": {"trainingRun": "base"}})
    few = plan_retraining(served, drift, [], Capture(0, window=50, divergence=0.9), NOW)
    assert few.status.message == "no trigger fired: drift: 50 predictions in the window of 100 needed"
    low = plan_retraining(served, drift, [], Capture(0, window=500, divergence=0.05), NOW)
    assert low.status.message == "no trigger fired: drift: divergence 0.050 < 0.2"
    high = plan_retraining(served, drift, [], Capture(0, window=500, divergence=0.35), NOW)
    assert high.fired.reason == "Drift" and high.status.drift_triggered_for == "base"
    again = deployment({"currentModel": {"trainingRun": "base"}, "retraining": high.status.to_patch()})
    runs = [run(1)]
    repeat = plan_retraining(again, drift, runs, Capture(0, window=500, divergence=0.35), NOW)
    assert repeat.create is None
    assert (
        repeat.status.message
        == "no trigger fired: drift: divergence 0.350 >= 0.2, already retrained for base"
    )


def test_history_removes_old_finished_runs_but_never_the_served_promoted_or_running_ones() -> None:
    runs = [run(index) for index in range(1, 9)] + [run(9, phase="Running")]
    status = {"currentModel": {"trainingRun": "md-retrain-1"}, "canary": {"candidate": "md-retrain-2"}}
    decision = plan_retraining(
        deployment(status), policy(minNewLabels=1000, historyLimit=3), runs, Capture(0), NOW
    )
    # Finished: 1..8; the newest three (6, 7, 8) stay, and so do the served (1) and the canary (2).
    assert decision.delete == ["md-retrain-3", "md-retrain-4", "md-retrain-5"]


def test_labels_counted_again_from_zero_when_the_store_was_emptied() -> None:
    runs = [run(1, labels_at=500)]
    decision = plan_retraining(deployment(), policy(minNewLabels=100), runs, Capture(labelled=120), NOW)
    assert decision.create["metadata"]["name"] == "md-retrain-2"


def test_a_run_the_api_server_refuses_leaves_the_status_as_it_was_and_says_why() -> None:
    previous = {"retraining": {"lastRun": "md-retrain-1", "labelsAtLastRun": 100}}
    runs = [run(1, labels_at=100)]
    decision = plan_retraining(deployment(previous), policy(minNewLabels=10), runs, Capture(200), NOW)
    assert decision.create is not None
    refused = decision.refused("422 Invalid: spec.output.uri: must not contain '..'")
    assert refused.create is None and refused.fired is None
    assert (refused.status.last_run, refused.status.labels_at_last_run, refused.status.last_trigger) == (
        "md-retrain-1",
        100,
        None,
    )
    assert refused.status.message == (
        "spec.retraining.template: the API server refused the TrainingRun: "
        "422 Invalid: spec.output.uri: must not contain '..'"
    )
