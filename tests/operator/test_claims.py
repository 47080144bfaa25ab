"""A run whose trainer pod waits for a claim says which claim, where, and what to do (issue 12, defects 6
and 16): the pure part, on the trainer Job the operator builds."""

from __future__ import annotations

from crucible.operator.trainingrun.claims import claim_problem, claims_of, scheduled
from crucible.operator.trainingrun.status import in_progress_status
from tests.operator.test_manifests import training_manifests

DATASET = {"dataset": {"source": "imageFolder", "uri": "pvc://images/digits"}}


def claim(name: str, phase: str = "Pending", **spec: object) -> dict:
    return {"metadata": {"name": name}, "spec": spec, "status": {"phase": phase}}


def test_the_claims_of_a_job_are_its_output_and_its_dataset() -> None:
    _, job = training_manifests(DATASET)
    assert claims_of(job) == {"artifacts": True, "images": False}
    assert not scheduled([{"spec": {}}]) and scheduled([{"spec": {"nodeName": "cpu-0"}}])


def test_a_missing_output_claim_names_itself_its_namespace_and_the_fixes() -> None:
    _, job = training_manifests()
    reason, message = claim_problem(job, {"artifacts": None}, {})
    assert reason == "ClaimNotFound"
    assert message == (
        "persistentvolumeclaim 'artifacts' not found in namespace 'ml': create it or set spec.output.uri / "
        "the chart's artifacts values, see docs/install.md"
    )


def test_a_missing_dataset_claim_points_at_the_dataset_uri() -> None:
    _, job = training_manifests(DATASET)
    bound = claim("artifacts", "Bound")
    reason, message = claim_problem(job, {"artifacts": bound, "images": None}, {})
    assert reason == "ClaimNotFound"
    assert message.endswith("'images' not found in namespace 'ml': create it or change spec.dataset.uri")


def test_a_pending_claim_names_its_class_its_access_mode_and_the_latest_event() -> None:
    _, job = training_manifests()
    pending = claim("artifacts", storageClassName="standard", accessModes=["ReadWriteMany"])
    events = [
        {
            "metadata": {},
            "reason": "ProvisioningFailed",
            "message": "old",
            "lastTimestamp": "2026-01-01T00:00:01Z",
        },
        {
            "metadata": {},
            "reason": "ProvisioningFailed",
            "message": "access mode ReadWriteMany is not supported",
            "lastTimestamp": "2026-01-01T00:00:09Z",
        },
    ]
    reason, message = claim_problem(job, {"artifacts": pending}, {"artifacts": events})
    assert reason == "ClaimPending"
    assert message == (
        "persistentvolumeclaim 'artifacts' in namespace 'ml' is Pending (StorageClass 'standard', "
        "ReadWriteMany): ProvisioningFailed: access mode ReadWriteMany is not supported; many default "
        "StorageClasses cannot provision ReadWriteMany, see docs/install.md"
    )
    without_class = claim("artifacts", accessModes=["ReadWriteOnce"])
    _, message = claim_problem(job, {"artifacts": without_class}, {})
    assert "(no storageClassName and no default StorageClass, ReadWriteOnce)" in message


def test_bound_or_unread_claims_are_no_problem() -> None:
    _, job = training_manifests(DATASET)
    assert claim_problem(job, {"artifacts": claim("artifacts", "Bound")}, {}) is None
    assert claim_problem(job, {}, {}) is None


def test_a_claim_problem_is_the_pending_runs_reason_before_the_pods_own() -> None:
    _, job = training_manifests()
    job["status"] = {"active": 1}
    unschedulable = {
        "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
    }
    problem = claim_problem(job, {"artifacts": None}, {})
    status = in_progress_status(job, 1, None, [unschedulable], claim=problem).to_patch()
    assert status["phase"] == "Pending"
    assert status["reason"].startswith("ClaimNotFound: persistentvolumeclaim 'artifacts' not found")
    (ready,) = [item for item in status["conditions"] if item["type"] == "Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ClaimNotFound")
    assert in_progress_status(job, 1, None, [unschedulable]).to_patch()["reason"].startswith("Unschedulable")
