"""Reading Jobs, pods and runs back into status: pure functions, no cluster."""

from __future__ import annotations

import json

from crucible.api.result import TrainResult
from crucible.api.status import ServedModel
from crucible.operator.kube.conditions import carried_over, condition
from crucible.operator.modeldeployment.status import judge, not_served_status, rollout_state, serving_status
from crucible.operator.trainingrun.status import (
    Termination,
    finished_status,
    in_progress_status,
    job_phase,
    progress_text,
    termination_of,
)


def job(conditions: list[dict] | None = None, **status: object) -> dict:
    return {
        "metadata": {"name": "r-train"},
        "spec": {"activeDeadlineSeconds": 60},
        "status": {"conditions": conditions or [], **status},
    }


COMPLETE = [{"type": "Complete", "status": "True"}]
FAILED = [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]


def ended(code: int, message: str, reason: str = "Error", at: str = "2025-01-01T00:00:10Z") -> Termination:
    return Termination(exit_code=code, reason=reason, message=message, finished_at=at)


def test_job_phases() -> None:
    assert job_phase(job()) == "Pending"
    assert job_phase(job(active=1)) == "Pending"  # a pod exists, its container does not run yet
    assert job_phase(job(active=1, ready=1)) == "Running"
    assert job_phase(job(COMPLETE)) == "Succeeded"
    assert job_phase(job(FAILED)) == "Failed"


def test_a_running_run_whose_pod_is_replaced_stays_running_and_says_so() -> None:
    """An evicted or deleted trainer pod: the Job has none ready until the next one runs, which resumes
    from the checkpoint; the run does not step back to Pending."""
    replacing = in_progress_status(job(active=1), 1, None, progress="Final training", was_running=True)
    patch = replacing.to_patch()
    assert (patch["phase"], patch["progress"]) == ("Running", "Final training")
    ready = next(item for item in patch["conditions"] if item["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TrainerRestarting")
    assert "resumes from its checkpoint" in ready["message"]
    unschedulable = {"status": {"conditions": [{"type": "PodScheduled", "status": "False",
                     "reason": "Unschedulable", "message": "0/2 nodes are available"}]}}  # fmt: skip
    stuck = in_progress_status(job(active=1), 1, None, [unschedulable], was_running=True).to_patch()
    assert (stuck["phase"], stuck["reason"]) == ("Running", "Unschedulable: 0/2 nodes are available")
    assert in_progress_status(job(active=1), 1, None).to_patch()["phase"] == "Pending"  # not started yet


def test_the_latest_termination_of_the_trainer_container_wins() -> None:
    def pod(message: str, finished: str) -> dict:
        terminated = {"exitCode": 1, "message": message, "finishedAt": finished}
        return {"status": {"containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}]}}

    found = termination_of(
        [pod("old", "2025-01-01T00:00:01Z"), pod("new", "2025-01-01T00:00:09Z")], "trainer"
    )
    assert found is not None and found.message == "new"
    assert termination_of([{"status": {}}], "trainer") is None


def test_a_failed_gate_is_the_reason_and_its_condition() -> None:
    result = TrainResult(
        phase="Failed",
        reason="debug gate failed: overfitOneBatch = 0.5 (must be < 0.2)",
        gates={
            "debug": {
                "passed": False,
                "checks": {"overfitOneBatch": {"value": 0.5, "threshold": 0.2, "passed": False}},
            }
        },
    )
    status = finished_status(job(FAILED), ended(1, result.to_json()), 1, None)
    assert (status.phase, status.reason) == ("Failed", result.reason)
    ready, gates = status.conditions
    assert (ready.status, ready.reason) == ("False", "GateFailed")
    assert (gates.status, gates.reason, gates.message) == ("False", "DebugGateFailed", result.reason)
    assert status.gates["debug"].checks["overfitOneBatch"].value == 0.5


def test_success_carries_metrics_and_artifact() -> None:
    result = TrainResult(
        phase="Succeeded",
        gates={"debug": {"passed": True}},
        metrics={"accuracy": 0.97},
        artifact={"uri": "pvc://a/b", "sha256": "f" * 64},
    )
    patch = finished_status(
        job(COMPLETE, completionTime="2025-01-01T00:01:00Z"), ended(0, result.to_json()), 2, None
    )
    written = patch.to_patch()
    assert written["phase"] == "Succeeded" and written["reason"] is None  # null clears an old reason
    assert written["metrics"] == {"accuracy": 0.97}
    assert written["artifact"] == {"uri": "pvc://a/b", "sha256": "f" * 64}
    assert written["completionTime"] == "2025-01-01T00:01:00Z"
    assert [c["status"] for c in written["conditions"]] == ["True", "True"]


def test_outcomes_and_evaluation_reach_status_and_a_malformed_summary_is_left_out() -> None:
    outcomes = {"images": 9, "stride": 1, "bits": "/4A="}
    summary = {"classes": ["a"], "f1": [1.0], "confusion": [[9]], "curves": {"epoch": [1], "valLoss": [0.2]}}
    result = TrainResult(phase="Succeeded", outcomes=outcomes, evaluation=summary)
    written = finished_status(job(COMPLETE), ended(0, result.to_json()), 1, None).to_patch()
    assert written["outcomes"] == outcomes
    assert written["evaluation"]["f1"] == [1.0] and written["evaluation"]["curves"]["valLoss"] == [0.2]
    # From a trainer whose summary does not fit the schema: the run's status is written without it.
    odd = TrainResult(phase="Succeeded", outcomes=outcomes, evaluation={"f1": "high"})
    status = finished_status(job(COMPLETE), ended(0, odd.to_json()), 1, None)
    assert status.phase == "Succeeded" and status.evaluation is None and status.outcomes is not None


def test_a_nan_metric_does_not_lose_the_result() -> None:
    message = json.dumps({"phase": "Failed", "reason": "overfitting gate failed", "metrics": {"loss": None}})
    status = finished_status(job(FAILED), ended(1, message), 1, None)
    assert status.reason == "overfitting gate failed"


def test_a_trainer_killed_for_memory_fails_its_run_with_out_of_memory() -> None:
    oom_job = job(FAILED)
    oom_job["spec"]["template"] = {
        "spec": {"containers": [{"name": "trainer", "resources": {"limits": {"cpu": "2", "memory": "4Gi"}}}]}
    }
    status = finished_status(oom_job, ended(137, "", reason="OOMKilled"), 1, None)
    assert status.phase == "Failed"
    assert status.reason.startswith(
        "OutOfMemory: the trainer was killed for exceeding its memory limit of 4Gi"
    )
    assert "raise spec.resources.memory" in status.reason
    (ready,) = [c for c in status.to_patch()["conditions"] if c["type"] == "Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "OutOfMemory")


def test_crashes_are_explained() -> None:
    oom = finished_status(job(FAILED), ended(137, "", reason="OOMKilled"), 1, None)
    assert "raise spec.resources.memory" in oom.reason
    crash = finished_status(job(FAILED), ended(1, "Traceback...\nRuntimeError: boom"), 1, None)
    assert crash.reason == "the trainer exited with code 1 (Error): RuntimeError: boom"
    deadline = [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
    assert "deadline (60 s)" in finished_status(job(deadline), None, 1, None).reason


def test_transition_time_moves_only_with_the_status() -> None:
    first = in_progress_status(job(active=1), 1, None).to_patch()["conditions"]
    first[0]["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    again = carried_over(first, [condition("Ready", False, "Running")])
    assert again[0].to_patch()["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    flipped = carried_over(first, [condition("Ready", True, "Succeeded")])
    assert flipped[0].to_patch()["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def succeeded_run(**status: object) -> dict:
    base = {
        "phase": "Succeeded",
        "gates": {"debug": {"passed": True}},
        "metrics": {"accuracy": 0.9},
        "artifact": {"uri": "pvc://artifacts/ns/r/u", "sha256": "a" * 64},
    }
    return {"status": {**base, **status}}


def test_only_succeeded_runs_that_passed_every_gate_are_served() -> None:
    assert judge(None, "r").reason == "TrainingRunNotFound"
    running = judge({"status": {"phase": "Running"}}, "r")
    assert (running.servable, running.reason) == (False, "TrainingRunNotSucceeded")
    assert "is Running" in running.message
    failed_gate = judge(succeeded_run(gates={"debug": {"passed": False}}), "r")
    assert (failed_gate.reason, failed_gate.message) == (
        "GatesNotPassed",
        "TrainingRun r did not pass: debug",
    )
    assert (
        judge(succeeded_run(artifact={"uri": "file:///x", "sha256": "a"}), "r").reason
        == "ArtifactNotMountable"
    )
    verdict = judge(succeeded_run(), "r")
    assert verdict.servable and verdict.artifact.claim == "artifacts" and verdict.model.accuracy == 0.9


def deployment(generation: int = 1, observed: int = 1, **counts: int) -> dict:
    return {
        "metadata": {"name": "md-stable", "generation": generation},
        "status": {"observedGeneration": observed, **counts},
    }


def test_rollout_state() -> None:
    assert rollout_state(None, 1)[1] == "DeploymentMissing"
    assert rollout_state(deployment(2, 1), 1)[1] == "RollingOut"
    assert (
        rollout_state(deployment(updatedReplicas=1, availableReplicas=0, replicas=1), 1)[1]
        == "ReplicasNotReady"
    )
    assert rollout_state(deployment(updatedReplicas=2, availableReplicas=2, replicas=3), 2)[:2] == (
        False,
        "ScalingDown",
    )
    assert rollout_state(deployment(updatedReplicas=2, availableReplicas=2, replicas=2), 2)[0] is True


def test_not_served_keeps_the_current_model_and_says_so() -> None:
    body = {
        "metadata": {"generation": 3},
        "status": {"currentModel": {"trainingRun": "old", "uri": "u", "sha256": "s"}},
    }
    status = not_served_status(body, "TrainingRunNotSucceeded", "TrainingRun new is Running", None).to_patch()
    assert status["currentModel"]["trainingRun"] == "old"
    assert status["conditions"][0]["message"] == "TrainingRun new is Running; still serving old"
    assert status["observedGeneration"] == 3


def test_serving_status() -> None:
    body = {"metadata": {"generation": 1}}
    model = ServedModel(training_run="r", uri="pvc://a/b", sha256="s")
    ready = deployment(updatedReplicas=1, availableReplicas=1, replicas=1, readyReplicas=1)
    status = serving_status(body, model, ready, "md-server", "http://md-server.ns.svc:80", 1).to_patch()
    assert status["conditions"][0]["status"] == "True"
    assert status["currentModel"]["trainingRun"] == "r"
    assert (status["deploymentName"], status["readyReplicas"]) == ("md-stable", 1)


def conditions_of(deployment: dict, replicas: int) -> list[tuple[str, str]]:
    body = {"metadata": {"generation": 1}}
    model = ServedModel(training_run="r", uri="pvc://a/b", sha256="s")
    status = serving_status(body, model, deployment, "md-server", "http://md-server.ns.svc:80", replicas)
    return [(c["status"], c["reason"]) for c in status.to_patch()["conditions"][:2]]


def test_ready_means_serving_at_full_capacity_and_progressing_means_a_rollout_is_under_way() -> None:
    # The old replicas serve while new ones start (maxUnavailable 0): Ready, and Progressing.
    rolling = deployment(updatedReplicas=1, availableReplicas=2, replicas=3)
    assert conditions_of(rolling, 2) == [("True", "ServingModel"), ("True", "RollingOut")]
    # Extra replicas still stopping (a stable track giving way to a canary): the same.
    stopping = deployment(updatedReplicas=1, availableReplicas=1, replicas=2)
    assert conditions_of(stopping, 1) == [("True", "ServingModel"), ("True", "RollingOut")]
    # Below capacity (a first rollout, crashed replicas): not Ready.
    starting = deployment(updatedReplicas=2, availableReplicas=1, replicas=2)
    assert conditions_of(starting, 2) == [("False", "ReplicasNotReady"), ("True", "RollingOut")]
    # The Deployment controller gave up: the model asked for is not served, whatever still answers.
    gave_up = deployment(updatedReplicas=1, availableReplicas=2, replicas=3)
    gave_up["status"]["conditions"] = [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    ]
    assert conditions_of(gave_up, 2) == [
        ("False", "ProgressDeadlineExceeded"),
        ("False", "ProgressDeadlineExceeded"),
    ]


TRAINER_LOG = """\
[    2.9s] stage Loading data
[    3.0s] skipped 1 unreadable file: cats/broken.jpg
[   14.0s] stage Cross-validation
[   38.2s] fold 2/5 epoch 2/8 loss 0.5200 acc 0.8300 205 img/s
[   40.6s] fold 2/5 epoch 3/8 loss 0.4100 acc 0.8800 212 img/s
"""


def test_progress_is_the_stage_and_the_latest_epoch_of_the_trainer_log() -> None:
    assert (
        progress_text(TRAINER_LOG) == "Cross-validation: fold 2/5 epoch 3/8 loss 0.4100 acc 0.8800 212 img/s"
    )
    assert progress_text(TRAINER_LOG + "[   95.0s] stage Final training\n") == "Final training"
    assert progress_text("Traceback (most recent call last):\n") is None
    assert progress_text("") is None


def test_a_running_run_keeps_its_progress_and_a_finished_one_has_none() -> None:
    running = job(active=1, ready=1)
    kept = in_progress_status(running, 1, None, progress="Cross-validation: fold 1/5 epoch 1/8")
    assert kept.to_patch()["progress"] == "Cross-validation: fold 1/5 epoch 1/8"
    assert in_progress_status(job(), 1, None, progress="stale").to_patch()["progress"] is None  # Pending
    done = finished_status(job(COMPLETE), ended(0, json.dumps({"phase": "Succeeded"})), 1, None)
    assert done.to_patch()["progress"] is None  # a null in the merge patch clears the last one
