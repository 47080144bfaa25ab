"""TrainingRun end to end on the real control plane: the operator as the chart's ServiceAccount, the
real Job controller and garbage collector, trainer pods run by the test kubelet as local processes."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import FAST_SPEC
from tests.operator.e2e import RUNS, condition_of, run_phase, status_of
from tests.operator.fake_cluster import eventually
from tests.operator.node_agent import NodeAgent
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import RealCluster

HANDLED = "crucible.dev/last-handled-configuration"
# The debug gate's overfit-one-batch check cannot pass at this learning rate.
DIVERGING = {**FAST_SPEC, "hyperparameters": {"optimizer": "sgd", "learningRate": 50.0}}


def children(cluster: RealCluster) -> dict[str, list[str]]:
    """What the operator made in the namespace (the API server's own root-CA ConfigMap left out); each
    owned by its run as its controller, with blockOwnerDeletion (which needs the finalizers grant)."""
    found = {}
    for resource in ("v1/configmaps", "batch/v1/jobs"):
        objects = [
            o for o in cluster.objects_of(resource).values() if o["metadata"]["name"] != "kube-root-ca.crt"
        ]
        for body in objects:
            (owner,) = body["metadata"]["ownerReferences"]
            assert owner["kind"] == "TrainingRun" and owner["controller"] and owner["blockOwnerDeletion"]
        found[resource] = sorted(o["metadata"]["name"] for o in objects)
    return found


async def test_a_training_run_trains_on_digits_and_reports_real_metrics(
    cluster: RealCluster, operator: OperatorThread, kubelet: NodeAgent
) -> None:
    await cluster.create_resource("TrainingRun", "digits", FAST_SPEC)
    status = await run_phase(cluster, "digits", ("Succeeded", "Failed"), timeout=150)

    assert status["phase"] == "Succeeded", status.get("reason")
    assert status["metrics"]["accuracy"] > 0.8
    assert status["gates"]["crossValidation"]["mean"] > 0.8
    assert len(status["gates"]["crossValidation"]["folds"]) == 3
    assert status["gates"]["debug"]["checks"]["overfitOneBatch"]["passed"] is True
    uid = cluster.get(RUNS, "digits")["metadata"]["uid"]
    assert status["artifact"]["uri"] == f"pvc://artifacts/{cluster.namespace}/digits/{uid}"
    assert len(status["artifact"]["sha256"]) == 64
    assert status["startTime"] and status["completionTime"] and status["observedGeneration"] == 1
    assert condition_of(status, "Ready")["status"] == "True"
    assert condition_of(status, "GatesPassed")["reason"] == "AllGatesPassed"

    def succeeded_event() -> bool:  # Events are posted in the background, shortly after
        events = cluster.objects_of("v1/events").values()
        return any(event["reason"] == "Succeeded" and "accuracy" in event["message"] for event in events)

    await eventually(succeeded_event, 10, "a Succeeded Event")

    # The artifact sits on the claim's volume at the path the URI names.
    artifact = kubelet.volume("artifacts") / cluster.namespace / "digits" / uid
    assert (artifact / "model.pt").is_file() and (artifact / "result.json").is_file()
    assert children(cluster) == {"v1/configmaps": ["digits-spec"], "batch/v1/jobs": ["digits-train"]}

    # Deleting the run takes its children with it (the garbage collector), never the artifact.
    await cluster.delete_resource("TrainingRun", "digits")
    await eventually(lambda: cluster.get(RUNS, "digits") is None, 10, "the run is deleted")
    await eventually(lambda: not any(children(cluster).values()), 30, "the children are collected")
    await eventually(lambda: not cluster.objects_of("v1/pods"), 30, "the pod is collected")
    assert (artifact / "model.pt").is_file()


async def test_a_failing_gate_ends_failed_with_the_gates_reason(
    cluster: RealCluster, operator: OperatorThread, kubelet: NodeAgent
) -> None:
    await cluster.create_resource("TrainingRun", "diverging", DIVERGING)
    status = await run_phase(cluster, "diverging", ("Succeeded", "Failed"), timeout=120)

    assert status["phase"] == "Failed"
    assert status["reason"].startswith("debug gate failed: overfitOneBatch")
    assert status["gates"]["debug"]["passed"] is False
    assert "artifact" not in status
    gates = condition_of(status, "GatesPassed")
    assert (gates["status"], gates["reason"]) == ("False", "DebugGateFailed")
    assert condition_of(status, "Ready")["reason"] == "GateFailed"
    # Exit code 1 fails the Job at once (podFailurePolicy): the same spec is not trained again.
    assert len(kubelet.pods_run) == 1


async def test_an_invalid_spec_is_reported_once_and_creates_nothing(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    """A node pool is only known to the operator's configuration (the schema cannot refuse it); what
    the schema can refuse (an unknown architecture) the API server refuses at apply time."""
    with pytest.raises(AssertionError, match=re.escape('spec.model.architecture: Unsupported value: "vgg"')):
        await cluster.create_resource("TrainingRun", "vgg", {**FAST_SPEC, "model": {"architecture": "vgg"}})
    spec, field = {"resources": {"nodePool": "tpu"}}, "spec.resources.nodePool"
    await cluster.create_resource("TrainingRun", "bad", {**FAST_SPEC, **spec})
    status = await run_phase(cluster, "bad", ("Failed",), timeout=60)

    ready = condition_of(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith(field)
    assert status["reason"].startswith(f"InvalidSpec: {field}")

    # Once kopf has recorded the Failed phase as handled, nothing more is written: no retries.
    def handled() -> bool:
        annotations = cluster.get(RUNS, "bad")["metadata"].get("annotations", {})
        return '"phase":"Failed"' in annotations.get(HANDLED, "")

    await eventually(handled, 10, "the handling is recorded")
    versions = len(cluster.versions(RUNS, "bad"))
    await asyncio.sleep(2)
    assert len(cluster.versions(RUNS, "bad")) == versions  # the run is not written again
    assert not cluster.objects_of("batch/v1/jobs")

    # Fixed (allowed while no Job exists), the run starts.
    await cluster.patch_spec(
        "TrainingRun", "bad", {**FAST_SPEC, "resources": {"nodePool": "cpu"}, "model": FAST_SPEC["model"]}
    )
    assert (await run_phase(cluster, "bad", ("Succeeded",), timeout=60))["jobName"] == "bad-train"


async def test_status_follows_the_job(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    await cluster.create_resource("TrainingRun", "quick", FAST_SPEC)
    status = await run_phase(cluster, "quick", ("Succeeded",), timeout=60)
    assert status["jobName"] == "quick-train"
    # Every phase the run went through, in order, with no step back.
    phases = [
        phase
        for body in cluster.versions(RUNS, "quick")
        if (phase := (body.get("status") or {}).get("phase"))
    ]
    phases = [phase for phase, _ in itertools.groupby(phases)]
    assert phases == sorted(set(phases), key=["Pending", "Running", "Succeeded"].index)
    assert children(cluster) == {"v1/configmaps": ["quick-spec"], "batch/v1/jobs": ["quick-train"]}
    assert status_of(cluster, RUNS, "quick")["metrics"]["accuracy"] == 0.97


def waiting(cluster: RealCluster, name: str, reason: str) -> Callable[[], bool]:
    def check() -> bool:
        status = status_of(cluster, RUNS, name)
        return status.get("phase") == "Pending" and (status.get("reason") or "").startswith(f"{reason}: ")

    return check


@pytest.mark.slow
async def test_a_run_whose_claim_is_missing_says_so_until_the_claim_exists(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent, operator_config: Path
) -> None:
    """Issue 12, defects 15 and 16: a Job counts a pod that cannot start as active; the run stays Pending,
    never says Running, and says which claim its namespace lacks (as in namespace `ml` with the claim
    only in the release namespace). Created, the claim lets the run go on."""
    claim = "artifacts-elsewhere"
    config = {"artifacts": {"claim": claim}, "training": {"progressIntervalSeconds": 1}}
    operator_config.write_text(yaml.safe_dump(config))
    await operator.restart()  # reads the configuration again
    await cluster.create_resource("TrainingRun", "waits", FAST_SPEC)

    await eventually(waiting(cluster, "waits", "ClaimNotFound"), 30, "the run to say its claim is missing")
    status = status_of(cluster, RUNS, "waits")
    assert status["reason"] == (
        f"ClaimNotFound: persistentvolumeclaim '{claim}' not found in namespace '{cluster.namespace}': "
        "create it or set spec.output.uri / the chart's artifacts values, see docs/install.md"
    )
    ready = condition_of(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ClaimNotFound")

    await cluster.bound_claim(claim, instant_kubelet.volume(claim))
    await run_phase(cluster, "waits", ("Succeeded",), timeout=60)
    phases = [(body.get("status") or {}).get("phase") for body in cluster.versions(RUNS, "waits")]
    assert "Running" not in phases  # the instant kubelet finishes a pod as it starts


@pytest.mark.slow
async def test_a_run_whose_claim_stays_pending_names_the_claim_and_its_class(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent, operator_config: Path
) -> None:
    """Issue 12, defect 6: a claim no provisioner serves stays Pending; the run says so, with the claim's
    StorageClass and access mode and what the volume controller said about it."""
    storage_class = f"{cluster.namespace}-none"
    await cluster.api.call(
        "POST",
        "/apis/storage.k8s.io/v1/storageclasses",
        {"metadata": {"name": storage_class}, "provisioner": "kubernetes.io/no-provisioner"},
    )
    claim = "artifacts-unbound"
    spec = {"storageClassName": storage_class, "accessModes": ["ReadWriteMany"]}
    request = {**spec, "resources": {"requests": {"storage": "1Gi"}}}
    await cluster.create("v1/persistentvolumeclaims", {"metadata": {"name": claim}, "spec": request})
    config = {"artifacts": {"claim": claim}, "training": {"progressIntervalSeconds": 1}}
    operator_config.write_text(yaml.safe_dump(config))
    await operator.restart()
    try:
        await cluster.create_resource("TrainingRun", "waits", FAST_SPEC)
        await eventually(waiting(cluster, "waits", "ClaimPending"), 30, "the run to say its claim is Pending")
        reason = status_of(cluster, RUNS, "waits")["reason"]
        assert reason.startswith(
            f"ClaimPending: persistentvolumeclaim '{claim}' in namespace '{cluster.namespace}' is Pending "
            f"(StorageClass '{storage_class}', ReadWriteMany)"
        )
        assert condition_of(status_of(cluster, RUNS, "waits"), "Ready")["reason"] == "ClaimPending"

        def explained() -> bool:  # the volume controller's Event, once posted, is read on the next look
            return (
                "ProvisioningFailed: no volume plugin matched" in status_of(cluster, RUNS, "waits")["reason"]
            )

        await eventually(explained, 30, "the run to carry the claim's Event")
    finally:
        await cluster.api.request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{storage_class}")
