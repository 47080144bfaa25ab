"""spec.retraining on the real control plane: the operator (as the chart's ServiceAccount) reads the capture
endpoint of the ModelDeployment's ready server, creates TrainingRuns from the template when enough new
labels arrived, waits while one runs, removes runs beyond historyLimit, and says all of it in
status.retraining and Events. The server pod is reported ready by the instant test kubelet, and the test
answers its capture endpoint on the pod's address (what `crucible serve --capture` answers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from tests.cluster.conftest import ARTIFACTS_CLAIM
from tests.conftest import FAST_SPEC
from tests.operator.e2e import DEPLOYMENTS, run_phase, status_of
from tests.operator.fake_cluster import eventually
from tests.operator.node_agent import NodeAgent
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import RealCluster

LABELS = {"crucible.dev/model": "digits"}
RUNS = "crucible.dev/v1alpha1/trainingruns"
MD = "md"


@pytest.fixture
def operator_config(tmp_path: Path) -> Path:
    """The chart's configuration, with policies evaluated every second."""
    path = tmp_path / "operator.yaml"
    config = {"artifacts": {"claim": ARTIFACTS_CLAIM}, "retraining": {"intervalSeconds": 1}}
    path.write_text(yaml.safe_dump(config))
    return path


class CaptureEndpoint:
    """GET /v2/models/md/capture as a server with capture on answers it; `labelled` is set by the test."""

    def __init__(self) -> None:
        self.labelled = 0
        self.reads = 0

    async def answer(self, request: web.Request) -> web.Response:
        self.reads += 1
        assert request.match_info["name"] == MD
        return web.json_response(
            {
                "enabled": True,
                "sampleRate": 1.0,
                "captured": self.labelled,
                "labelled": self.labelled,
                "labelledByClass": {},
                "lastLabelAt": None,
                "drift": {"window": 0, "predictedShare": {}, "trainingShare": {}, "divergence": 0.0},
            }
        )


@asynccontextmanager
async def serve_capture(ip: str, endpoint: CaptureEndpoint) -> AsyncIterator[None]:
    app = web.Application()
    app.router.add_get("/v2/models/{name}/capture", endpoint.answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, ip, 8080).start()
    try:
        yield
    finally:
        await runner.cleanup()


def retraining_runs(cluster: RealCluster) -> list[str]:
    return sorted(name for name in cluster.objects_of(RUNS) if name.startswith(f"{MD}-retrain-"))


def retraining(cluster: RealCluster) -> dict:
    return status_of(cluster, DEPLOYMENTS, MD).get("retraining") or {}


def events(cluster: RealCluster, reason: str) -> list[str]:
    return [
        event["message"]
        for event in cluster.objects_of("v1/events").values()
        if event["involvedObject"]["name"] == MD and event["reason"] == reason
    ]


@pytest.mark.slow
async def test_new_labels_start_retraining_runs_one_at_a_time_and_old_ones_are_removed(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    instant_kubelet.results["base-train"] = {"metrics": {"accuracy": 0.9}}
    await cluster.create_resource("TrainingRun", "base", FAST_SPEC, labels=LABELS)
    await run_phase(cluster, "base", ("Succeeded",))
    # Retrained runs do worse here, so the served model (and its server pod) stays the base one.
    for index in (1, 2, 3):
        instant_kubelet.results[f"{MD}-retrain-{index}-train"] = {"metrics": {"accuracy": 0.5}}
    spec = {
        "model": {"selector": {"matchLabels": LABELS}},
        "rollout": {"strategy": "RollingUpdate"},
        "retraining": {
            "minNewLabels": 50,
            "historyLimit": 1,
            "template": {"metadata": {"labels": LABELS}, "spec": FAST_SPEC},
        },
    }
    applied = await cluster.create_resource("ModelDeployment", MD, spec)
    await eventually(lambda: instant_kubelet.pods_of(f"{MD}-stable"), 30, "the server pod")
    (pod,) = instant_kubelet.pods_of(f"{MD}-stable")
    endpoint = CaptureEndpoint()
    endpoint.labelled = 20
    async with serve_capture(pod.ip, endpoint):
        await eventually(
            lambda: retraining(cluster).get("message") == "no trigger fired: 20 new labels of 50 needed",
            30,
            "the policy reads 20 labels",
        )
        assert retraining_runs(cluster) == []

        endpoint.labelled = 60
        await eventually(lambda: retraining_runs(cluster) == [f"{MD}-retrain-1"], 30, "a run for 60 labels")
        created = cluster.get(RUNS, f"{MD}-retrain-1")
        assert created["metadata"]["labels"]["crucible.dev/retrained-for"] == MD
        assert created["metadata"]["labels"]["crucible.dev/model"] == "digits"
        (owner,) = created["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "ModelDeployment",
            MD,
            applied["metadata"]["uid"],
        )
        await run_phase(cluster, f"{MD}-retrain-1", ("Succeeded",))
        await eventually(lambda: retraining(cluster).get("lastRun") == f"{MD}-retrain-1", 30, "status")
        status = retraining(cluster)
        assert status["lastTrigger"]["reason"] == "NewLabels"
        assert status["labelsAtLastRun"] == 60
        said = f"NewLabels: created TrainingRun {MD}-retrain-1 (60 new labels (minNewLabels 50))"
        await eventually(lambda: events(cluster, "RetrainingTriggered") == [said], 10, "the trigger's Event")

        endpoint.labelled = 109  # 49 new: nothing
        await eventually(
            lambda: retraining(cluster).get("message") == "no trigger fired: 49 new labels of 50 needed",
            30,
            "the policy reads 49 new labels",
        )
        endpoint.labelled = 110
        await eventually(lambda: cluster.get(RUNS, f"{MD}-retrain-2"), 30, "a run for 50 more labels")
        await run_phase(cluster, f"{MD}-retrain-2", ("Succeeded",))
        # historyLimit 1: the older finished run goes (its artifacts stay where it wrote them).
        await eventually(lambda: retraining_runs(cluster) == [f"{MD}-retrain-2"], 30, "retrain-1 removed")
        await eventually(
            lambda: events(cluster, "RetrainingRunRemoved") == [f"TrainingRun {MD}-retrain-1 (historyLimit)"],
            10,
            "the removal said in an Event",
        )
    assert endpoint.reads >= 4
    assert status_of(cluster, DEPLOYMENTS, MD)["currentModel"]["trainingRun"] == "base"
    # GitOps-safe: the operator wrote status and children only, never the spec Git holds.
    after = cluster.get(DEPLOYMENTS, MD)
    assert after["spec"] == applied["spec"]
    assert after["metadata"]["generation"] == applied["metadata"]["generation"]
