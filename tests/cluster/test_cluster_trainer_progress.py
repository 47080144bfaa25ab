"""status.progress of a running TrainingRun on the real control plane: the operator, as the chart's
ServiceAccount (pods/log from the chart's ClusterRole), reads the trainer pod's log through the API
server, which fetches it from the test kubelet's container-log endpoint, every
training.progressIntervalSeconds."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from crucible.operator.config import OperatorConfig
from crucible.operator.kube.auth import login_with_file
from crucible.operator.kube.client import Kube
from crucible.operator.trainingrun.reconcile import Training
from tests.cluster.operator_config import write_operator_config
from tests.conftest import FAST_SPEC
from tests.operator.e2e import RUNS, run_phase, status_of
from tests.operator.fake_cluster import eventually
from tests.operator.kube_api import MERGE, STRATEGIC, resource_path
from tests.operator.kubelet_logs import ContainerLogServer
from tests.operator.node_agent import NodeAgent, node_name
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import RealCluster

# Long enough to be seen at several epochs, one refresh a second.
SPEC = {
    **FAST_SPEC,
    "hyperparameters": {**FAST_SPEC["hyperparameters"], "epochs": 12},
    "gates": {**FAST_SPEC["gates"], "crossValidation": {"folds": 3, "epochs": 4, "maxStd": 0.1}},
}
PROGRESS = re.compile(
    r"^(?P<stage>Cross-validation: fold \d/3|Final training: final) epoch (?P<epoch>\d+)/(?P<of>\d+) loss "
)


@pytest.fixture
def operator_config(tmp_path: Path) -> Path:
    return write_operator_config(tmp_path, training={"progressIntervalSeconds": 1})


STAGES = ("Loading data", "Debug gate", "Cross-validation", "Final training", "Evaluation", "Export")


def progress_seen(cluster: RealCluster, name: str) -> list[str]:
    """Every status.progress the run had, in order, without repeats."""
    seen: list[str] = []
    for body in cluster.versions(RUNS, name):
        progress = (body.get("status") or {}).get("progress")
        if progress and (not seen or seen[-1] != progress):
            seen.append(progress)
    return seen


@pytest.mark.slow
async def test_a_running_training_run_shows_its_current_stage_and_epoch_in_status_progress(
    cluster: RealCluster, operator: OperatorThread, kubelet: NodeAgent
) -> None:
    await cluster.create_resource("TrainingRun", "followed", SPEC)

    def shows_an_epoch() -> str | None:
        progress = status_of(cluster, RUNS, "followed").get("progress") or ""
        return progress if PROGRESS.match(progress) else None

    first = await eventually(shows_an_epoch, 120, "status.progress shows an epoch")
    assert status_of(cluster, RUNS, "followed")["phase"] == "Running"
    # What it shows is the trainer's own latest line, read back from the pod's log.
    (pod,) = kubelet.running("followed-train")
    assert first.split(": ", 1)[1] in kubelet.log(pod.name)
    # Refreshed while the run goes on, not read once.
    await eventually(lambda: shows_an_epoch() not in (None, first), 60, "status.progress moves on")

    status = await run_phase(cluster, "followed", ("Succeeded", "Failed"), timeout=180)
    assert status["phase"] == "Succeeded", status.get("reason")
    seen = progress_seen(cluster, "followed")
    # Only the trainer's stages and epoch lines, in the order it went through them.
    assert len(seen) >= 2 and all(PROGRESS.match(text) or text in STAGES for text in seen), seen
    epochs = [(match["stage"], int(match["epoch"])) for text in seen if (match := PROGRESS.match(text))]
    assert epochs == sorted(epochs, key=lambda item: (item[0].startswith("Final"), item))
    # A finished run shows no progress: what it ended with is in its phase, gates and metrics.
    await asyncio.sleep(2.5)
    assert "progress" not in status_of(cluster, RUNS, "followed")


LOG = "[   2.0s] stage Cross-validation\n[   3.1s] fold 1/3 epoch 2/4 loss 0.4100 acc 0.8800 212 img/s\n"


async def running_trainer_pod(cluster: RealCluster, run: str) -> str:
    """A TrainingRun said to be Running, and a pod of its Job that the Node reports running (no process:
    the test serves its log)."""
    await cluster.create_resource("TrainingRun", run, FAST_SPEC)
    path = resource_path(RUNS, cluster.namespace, run) + "/status"
    await cluster.api.call("PATCH", path, {"status": {"phase": "Running", "jobName": f"{run}-train"}}, MERGE)
    container = {"name": "trainer", "image": "crucible-trainer", "command": ["crucible-train"]}
    pod = {
        "metadata": {"name": f"{run}-train-x1", "labels": {"job-name": f"{run}-train"}},
        "spec": {"nodeName": node_name("cpu"), "containers": [container]},
    }
    await cluster.create("v1/pods", pod)
    status = {"phase": "Running", "containerStatuses": [{"name": "trainer", "image": "crucible-trainer",
              "imageID": "", "ready": True, "restartCount": 0, "state": {"running": {}}}]}  # fmt: skip
    pod_status = resource_path("v1/pods", cluster.namespace, pod["metadata"]["name"]) + "/status"
    await cluster.api.call("PATCH", pod_status, {"status": status}, STRATEGIC)
    return pod["metadata"]["name"]


async def test_progress_is_read_with_the_charts_permissions_and_never_written_over_a_finished_run(
    cluster: RealCluster, operator_identity: Path, kubelet_logs: ContainerLogServer, kube_api
) -> None:
    """The run may finish while its log is being read: the progress read before must not land on the
    finished run's status (the write is conditional on the version of the run that was read)."""
    from kubernetes import client

    kube = Kube()
    kube.use(login_with_file(str(operator_identity)))
    training = Training(kube, OperatorConfig())
    runs = client.CustomObjectsApi(kube_api)

    def kubelet_log(pod: str, container: str) -> str | None:  # in the log server's thread
        run = pod.removesuffix("-train-x1")
        if run == "racing":  # the Job's handler records the result meanwhile
            finished = {"status": {"phase": "Succeeded", "progress": None}}
            runs.patch_namespaced_custom_object_status(
                "crucible.dev", "v1alpha1", cluster.namespace, "trainingruns", run, finished
            )
        return LOG if container == "trainer" else None

    kubelet_logs.serve(cluster.namespace, kubelet_log)
    pods = [await running_trainer_pod(cluster, run) for run in ("steady", "racing")]
    try:
        await training.refresh_progress(cluster.namespace, "steady")
        await training.refresh_progress(cluster.namespace, "racing")
    finally:
        kubelet_logs.forget(cluster.namespace)
        await kube.close()
        for pod in pods:  # no kubelet runs them: gone at once
            await cluster.api.request(
                "DELETE", resource_path("v1/pods", cluster.namespace, pod), {"gracePeriodSeconds": 0}
            )

    steady = await cluster.api.get(resource_path(RUNS, cluster.namespace, "steady"))
    assert (
        steady["status"]["progress"]
        == "Cross-validation: fold 1/3 epoch 2/4 loss 0.4100 acc 0.8800 212 img/s"
    )
    racing = await cluster.api.get(resource_path(RUNS, cluster.namespace, "racing"))
    assert racing["status"]["phase"] == "Succeeded" and "progress" not in racing["status"]
