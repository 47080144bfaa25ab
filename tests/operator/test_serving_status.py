"""A ModelDeployment's status while a canary runs, right after a rollback, and once its served run is
deleted: pure functions, no cluster."""

from __future__ import annotations

from crucible.api.status import ServedModel
from crucible.operator.kube.conditions import find
from crucible.operator.modeldeployment.status import (
    Track,
    restoring_capacity,
    serving_status,
    was_ready,
    with_model_deleted,
)

BASE = ServedModel(training_run="base", uri="pvc://artifacts/base", sha256="0123456789abcdef")


def deployment(name: str, replicas: int, available: int, generation: int = 1, observed: int = 1) -> dict:
    return {
        "metadata": {"name": name, "generation": generation},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "readyReplicas": available,
            "updatedReplicas": replicas,
            "availableReplicas": available,
        },
    }


def md(conditions: list[dict] | None = None, replicas: int = 4) -> dict:
    return {
        "metadata": {"name": "md", "generation": 1},
        "spec": {"replicas": replicas},
        "status": {"currentModel": BASE.model_dump(by_alias=True), "conditions": conditions or []},
    }


def status_of(body: dict, stable: dict, replicas: int, **options: object) -> dict:
    return serving_status(
        body, BASE, stable, "md-server", "http://md-server.ns.svc:80", replicas, **options
    ).to_patch()


def ready_of(patch: dict) -> tuple[str, str, str]:
    ready = find(patch["conditions"], "Ready")
    return ready["status"], ready["reason"], ready["message"]


def test_during_a_canary_the_replicas_of_both_tracks_count_against_spec_replicas() -> None:
    # replicas: 4 at weight 25: 3 stable replicas on base and 1 canary replica on better, all available.
    stable, canary = deployment("md-stable", 3, 3), deployment("md-canary", 1, 1)
    patch = status_of(md(), stable, 3, canary=Track(canary, 1, "better"), capacity=4)
    assert (patch["replicas"], patch["readyReplicas"], patch["availableReplicas"]) == (4, 4, 4)
    assert ready_of(patch) == (
        "True",
        "ServingModel",
        "4 of 4 replicas are available (3 on base, 1 on the canary better)",
    )
    assert find(patch["conditions"], "Progressing")["reason"] == "RolloutComplete"


def test_at_a_weight_of_100_the_stable_replica_that_stays_is_counted_too() -> None:
    stable, canary = deployment("md-stable", 1, 1), deployment("md-canary", 2, 2)
    patch = status_of(md(replicas=2), stable, 1, canary=Track(canary, 2, "better"), capacity=2)
    assert (patch["replicas"], patch["availableReplicas"]) == (3, 3)
    assert ready_of(patch) == (
        "True",
        "ServingModel",
        "3 (2 wanted) replicas are available (1 on base, 2 on the canary better)",
    )


def test_while_the_canary_replica_starts_the_stable_track_keeps_full_capacity() -> None:
    # The stable track gives up a replica only once the canary's is available: 4 stable, 1 canary starting.
    stable, canary = deployment("md-stable", 4, 4), deployment("md-canary", 1, 0)
    patch = status_of(md(), stable, 4, canary=Track(canary, 1, "better"), capacity=4)
    assert (patch["replicas"], patch["availableReplicas"]) == (5, 4)
    status, reason, message = ready_of(patch)
    assert (status, reason) == ("True", "ServingModel")
    assert message == "canary: 0 of 1 replicas are available (base; canary better)"
    assert find(patch["conditions"], "Progressing")["status"] == "True"


def test_a_canary_below_capacity_is_not_ready() -> None:
    stable, canary = deployment("md-stable", 3, 2), deployment("md-canary", 1, 1)
    patch = status_of(md(), stable, 3, canary=Track(canary, 1, "better"), capacity=4)
    assert ready_of(patch)[:2] == ("False", "ReplicasNotReady")


def test_right_after_a_rollback_ready_holds_while_the_stable_track_regains_the_canarys_replica() -> None:
    was_serving = md([{"type": "Ready", "status": "True", "reason": "ServingModel"}])
    assert was_ready(was_serving)
    # The canary is gone; the stable track was just resized from 3 to 4 (the controller has not acted).
    resized = deployment("md-stable", 3, 3, generation=3, observed=2)
    patch = status_of(was_serving, resized, 4, restoring=True)
    status, reason, message = ready_of(patch)
    assert (status, reason) == ("True", "ServingModel")
    assert message.startswith("3 of 4 replicas are available (base)")
    progressing = find(patch["conditions"], "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "RestoringCapacity")
    # The next status (from this one) still restores until the fourth replica is available ...
    after = {**was_serving, "status": {**was_serving["status"], "conditions": patch["conditions"]}}
    assert restoring_capacity(after)
    starting = deployment("md-stable", 4, 3, generation=3, observed=3)
    assert ready_of(status_of(after, starting, 4, restoring=restoring_capacity(after)))[0] == "True"
    # ... and then it is complete: an ordinary status again, no longer restoring.
    done = status_of(after, deployment("md-stable", 4, 4, generation=3, observed=3), 4, restoring=True)
    assert ready_of(done)[:2] == ("True", "ServingModel")
    assert find(done["conditions"], "Progressing")["reason"] == "RolloutComplete"
    assert not restoring_capacity({"status": {"conditions": done["conditions"]}})


def test_a_replica_lost_outside_a_rollback_is_still_not_ready() -> None:
    patch = status_of(md(), deployment("md-stable", 4, 3), 4)
    assert ready_of(patch) == ("False", "ReplicasNotReady", "3 of 4 replicas are available (base)")
    # Nor does restoring hide a track with nothing available.
    assert ready_of(status_of(md(), deployment("md-stable", 4, 0), 4, restoring=True))[0] == "False"


def test_a_deleted_served_run_is_said_and_the_servers_readiness_is_kept() -> None:
    body = md()
    serving = serving_status(body, BASE, deployment("md-stable", 4, 4), "md-server", "u", 4)
    patch = with_model_deleted(body, serving).to_patch()
    assert ready_of(patch)[:2] == ("True", "ServingModel")  # the servers still answer
    gone = find(patch["conditions"], "ModelAvailable")
    assert (gone["status"], gone["reason"]) == ("False", "ModelDeleted")
    assert gone["message"] == (
        "TrainingRun base was deleted; its servers keep serving its artifact pvc://artifacts/base "
        "(sha256 0123456789ab)"
    )
    assert patch["currentModel"]["trainingRun"] == "base"
    # Written again, the condition keeps the time it first turned False.
    again = {**body, "status": {**body["status"], "conditions": patch["conditions"]}}
    repeated = with_model_deleted(again, serving).to_patch()
    assert find(repeated["conditions"], "ModelAvailable")["lastTransitionTime"] == gone["lastTransitionTime"]
