"""TrainingRun end to end: the real operator, the emulated API, trainer Jobs run as local processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import FAST_SPEC
from tests.operator.e2e import RUNS, assert_created_manifests_are_valid, condition_of, run_phase, status_of
from tests.operator.fake_cluster import Cluster, eventually
from tests.operator.fake_kubelet import FakeKubelet
from tests.operator.operator_thread import OperatorThread

HANDLED = "crucible.dev/last-handled-configuration"
# The debug gate's overfit-one-batch check cannot pass at this learning rate.
DIVERGING = {**FAST_SPEC, "hyperparameters": {"optimizer": "sgd", "learningRate": 50.0}}


async def test_a_training_run_trains_on_digits_and_reports_real_metrics(
    cluster: Cluster, operator: OperatorThread, kubelet: FakeKubelet, tmp_path: Path
) -> None:
    await cluster.create_resource("TrainingRun", "digits", FAST_SPEC)
    status = await run_phase(cluster, "digits", ("Succeeded", "Failed"), timeout=150)

    assert status["phase"] == "Succeeded", status.get("reason")
    assert status["metrics"]["accuracy"] > 0.8
    assert status["gates"]["crossValidation"]["mean"] > 0.8
    assert len(status["gates"]["crossValidation"]["folds"]) == 3
    assert status["gates"]["debug"]["checks"]["overfitOneBatch"]["passed"] is True
    uid = cluster.get(RUNS, "digits")["metadata"]["uid"]
    assert status["artifact"]["uri"] == f"pvc://artifacts/default/digits/{uid}"
    assert len(status["artifact"]["sha256"]) == 64
    assert status["startTime"] and status["completionTime"] and status["observedGeneration"] == 1
    assert condition_of(status, "Ready")["status"] == "True"
    assert condition_of(status, "GatesPassed")["reason"] == "AllGatesPassed"

    def succeeded_event() -> bool:  # Events are posted in the background, shortly after
        events = cluster.objects_of("v1/events").values()
        return any(event["reason"] == "Succeeded" and "accuracy" in event["message"] for event in events)

    await eventually(succeeded_event, 10, "a Succeeded Event")

    # The artifact sits on the (emulated) volume at the path the URI names.
    artifact = tmp_path / "node" / "volumes" / "artifacts" / "default" / "digits" / uid
    assert (artifact / "model.pt").is_file() and (artifact / "result.json").is_file()
    assert assert_created_manifests_are_valid(cluster) == 2  # the spec ConfigMap and the Job

    # Deleting the run takes its children with it (owner references), never the artifact.
    await cluster.delete_resource("TrainingRun", "digits")
    await eventually(lambda: not cluster.objects_of("batch/v1/jobs"), 10, "the Job is collected")
    assert not cluster.objects_of("v1/configmaps") and not cluster.objects_of("v1/pods")
    assert (artifact / "model.pt").is_file()


async def test_a_failing_gate_ends_failed_with_the_gates_reason(
    cluster: Cluster, operator: OperatorThread, kubelet: FakeKubelet
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


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"resources": {"nodePool": "tpu"}}, "spec.resources.nodePool"),
        ({"model": {"architecture": "vgg"}}, "spec.model.architecture"),
    ],
)
async def test_an_invalid_spec_is_reported_once_and_creates_nothing(
    cluster: Cluster, operator: OperatorThread, instant_kubelet: FakeKubelet, spec: dict, field: str
) -> None:
    await cluster.create_resource("TrainingRun", "bad", {**FAST_SPEC, **spec})
    status = await run_phase(cluster, "bad", ("Failed",), timeout=20)

    ready = condition_of(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith(field)
    assert status["reason"].startswith(f"InvalidSpec: {field}")

    # Once kopf has recorded the Failed phase as handled, nothing more is written: no retries.
    def handled() -> bool:
        annotations = cluster.get(RUNS, "bad")["metadata"].get("annotations", {})
        return '"phase":"Failed"' in annotations.get(HANDLED, "")

    await eventually(handled, 10, "the handling is recorded")
    writes = len(cluster.requests)
    await asyncio.sleep(2)
    retried = [r for r in cluster.requests[writes:] if r.method != "GET" and r.resource.plural != "events"]
    assert not retried
    assert not cluster.objects_of("batch/v1/jobs")

    # Fixed (allowed while no Job exists), the run starts.
    await cluster.patch_spec(
        "TrainingRun", "bad", {**FAST_SPEC, "resources": {"nodePool": "cpu"}, "model": FAST_SPEC["model"]}
    )
    assert (await run_phase(cluster, "bad", ("Succeeded",), timeout=20))["jobName"] == "bad-train"


async def test_status_follows_the_job(
    cluster: Cluster, operator: OperatorThread, instant_kubelet: FakeKubelet
) -> None:
    await cluster.create_resource("TrainingRun", "quick", FAST_SPEC)
    status = await run_phase(cluster, "quick", ("Succeeded",), timeout=20)
    assert status["jobName"] == "quick-train"
    # Every phase the run went through, in order, with no step back.
    phases = [
        request.data["status"].get("phase")
        for request in cluster.requests
        if request.subresource == "status" and request.name == "quick" and isinstance(request.data, dict)
    ]
    assert phases == sorted(set(phases), key=["Pending", "Running", "Succeeded"].index)
    assert assert_created_manifests_are_valid(cluster) == 2
    assert status_of(cluster, RUNS, "quick")["metrics"]["accuracy"] == 0.97
