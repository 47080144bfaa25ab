"""Deleting without the operator, on the real control plane: no TrainingRun, ModelDeployment or TuningJob
ever carries a finalizer (the operator's periodic work runs over kopf indexes, not kopf timers), so with
the operator stopped or uninstalled `kubectl delete` of any of them, or of their namespace, completes at
once and the real garbage collector removes their children. An older operator's kopf finalizer is
removed by the new one as it sees the object. The operator runs as the chart's ServiceAccount; the
instant test kubelet reports server pods ready (no server process: a canary gets no metrics sample, so
it stays under analysis, mid-rollout, for its whole 10-minute deadline)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from crucible.operator.main import KOPF_FINALIZER
from tests.cluster.operator_config import local_study, write_operator_config
from tests.conftest import FAST_SPEC
from tests.operator.e2e import DEPLOYMENTS, RUNS, condition_of, run_phase, status_of
from tests.operator.fake_cluster import eventually
from tests.operator.kube_api import resource_path
from tests.operator.node_agent import NodeAgent
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import GROUP_VERSION, PLURALS, RealCluster

JOBS = "crucible.dev/v1alpha1/tuningjobs"
SERVERS = "apps/v1/deployments"
LABELS = {"crucible.dev/model": "digits"}
CANARY = {
    "model": {"selector": {"matchLabels": LABELS}},
    "replicas": 2,
    "promotion": {"minImprovement": 0.01},
    "rollout": {
        "strategy": "Canary",
        "steps": [{"weight": 50, "pause": "10m"}],
        "analysis": {"interval": "2s", "minRequests": 10},
        "progressDeadline": "10m",
    },
}
# Trials that stay Pending (no Node has 1000 CPUs): the search goes on for as long as the test needs.
SEARCH = {
    "template": {**FAST_SPEC, "resources": {"cpu": "1000"}},
    "searchSpace": {"hyperparameters.learningRate": {"type": "float", "low": 0.003, "high": 0.05}},
    "objective": {"metric": "accuracy"},
    "sampler": {"type": "random", "seed": 3},
    "maxTrials": 4,
    "parallelism": 2,
}
# Deleting an object that carries no finalizer is done when the DELETE is answered; a margin for a busy
# machine. The namespace controller empties a namespace in passes; while pods stop it looks again only
# after their grace period (30 s for servers).
DELETED_WITHIN = 5
NAMESPACE_DELETED_WITHIN = 60


@pytest.fixture
def operator_config(tmp_path: Path) -> Path:
    """Studies in a temporary folder; the study proxy on a free local port."""
    return write_operator_config(tmp_path, tuning=local_study(tmp_path))


def finalizers_seen(cluster: RealCluster) -> dict[str, list[str]]:
    """Every finalizer any version of a TrainingRun, ModelDeployment or TuningJob ever carried."""
    seen: dict[str, list[str]] = {}
    for (resource, name), versions in cluster.mirror.versions.items():
        if resource in (RUNS, DEPLOYMENTS, JOBS):
            for body in versions:
                for finalizer in body["metadata"].get("finalizers") or []:
                    seen.setdefault(f"{resource.rpartition('/')[2]}/{name}", []).append(finalizer)
    return seen


async def train(cluster: RealCluster, kubelet: NodeAgent, name: str, accuracy: float) -> None:
    kubelet.results[f"{name}-train"] = {"metrics": {"accuracy": accuracy}}
    await cluster.create_resource("TrainingRun", name, FAST_SPEC, labels=LABELS)
    await run_phase(cluster, name, ("Succeeded",), timeout=60)


def path_of(cluster: RealCluster, kind: str, name: str) -> str:
    return resource_path(f"{GROUP_VERSION}/{PLURALS[kind]}", cluster.namespace, name)


async def delete_and_time(cluster: RealCluster, path: str) -> float:
    """Seconds from the DELETE until the API server no longer has the object."""
    started = time.monotonic()
    status, answer = await cluster.api.request("DELETE", path)
    assert status < 300, answer
    while await cluster.api.get(path) is not None:
        assert time.monotonic() - started < DELETED_WITHIN * 4, f"{path} is still there"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def owned_by(cluster: RealCluster, resource: str, kind: str, name: str) -> list[str]:
    return [
        child
        for child, body in cluster.objects_of(resource).items()
        if any((o["kind"], o["name"]) == (kind, name) for o in body["metadata"].get("ownerReferences") or [])
    ]


@pytest.mark.slow
async def test_with_the_operator_stopped_deleting_mid_rollout_mid_search_and_the_namespace_completes(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    await train(cluster, instant_kubelet, "base", 0.90)
    await cluster.create_resource("ModelDeployment", "md", CANARY)
    await eventually(
        lambda: (
            (status_of(cluster, DEPLOYMENTS, "md").get("currentModel") or {}).get("trainingRun") == "base"
        ),
        30,
        "base served",
    )
    await train(cluster, instant_kubelet, "better", 0.95)
    await eventually(lambda: status_of(cluster, DEPLOYMENTS, "md").get("canary"), 30, "a canary runs")
    await eventually(lambda: cluster.get(SERVERS, "md-canary"), 30, "the canary Deployment")
    # A second ModelDeployment that picks its model (followed by the resync), and two searches.
    await cluster.create_resource(
        "ModelDeployment", "picker", {"model": {"selector": {"matchLabels": LABELS}}}
    )
    await cluster.create_resource("TuningJob", "tj", SEARCH)
    await cluster.create_resource("TuningJob", "tj2", SEARCH)
    for job in ("tj", "tj2"):
        await eventually(lambda job=job: cluster.get(RUNS, f"{job}-trial-001"), 60, f"{job} searching")
    # Rollout ticks (every 2 s) and tuning steps (every 5 s) come and go: still no finalizer anywhere.
    await asyncio.sleep(7)
    assert status_of(cluster, DEPLOYMENTS, "md")["canary"]["candidate"] == "better"
    assert status_of(cluster, JOBS, "tj")["phase"] not in ("Succeeded", "Failed")
    assert finalizers_seen(cluster) == {}

    await operator.stop()
    md_took = await delete_and_time(cluster, path_of(cluster, "ModelDeployment", "md"))
    tj_took = await delete_and_time(cluster, path_of(cluster, "TuningJob", "tj"))
    assert md_took < DELETED_WITHIN and tj_took < DELETED_WITHIN, (md_took, tj_took)
    # The garbage collector removes the children: servers, Services, budget; trials and their Jobs.
    await eventually(
        lambda: (
            not any(
                owned_by(cluster, resource, "ModelDeployment", "md")
                for resource in (SERVERS, "v1/services", "policy/v1/poddisruptionbudgets")
            )
        ),
        60,
        "md's children collected",
    )
    await eventually(lambda: not owned_by(cluster, RUNS, "TuningJob", "tj"), 60, "tj's trials collected")
    await eventually(
        lambda: not [job for job in cluster.objects_of("batch/v1/jobs") if job.startswith("tj-trial-")],
        60,
        "tj's trial Jobs collected",
    )
    assert cluster.get(SERVERS, "picker-stable") and cluster.get(RUNS, "tj2-trial-000")  # others stay

    # The namespace controller deletes what the namespace holds; while it waits it names what remains:
    # Kubernetes' own (server pods stopping within their 30 s grace period, the claim's pvc-protection
    # until they have), never a finalizer of the operator's.
    namespace = resource_path("v1/namespaces", name=cluster.namespace)
    started = time.monotonic()
    await cluster.api.call("DELETE", namespace)
    waiting_on: set[tuple[str, str]] = set()
    while (body := await cluster.api.get(namespace)) is not None:
        assert time.monotonic() - started < NAMESPACE_DELETED_WITHIN, (waiting_on, body.get("status"))
        for item in (body.get("status") or {}).get("conditions") or []:
            if item.get("status") == "True":
                waiting_on.add((item["type"], item.get("message", "")))
        await asyncio.sleep(0.5)
    took = time.monotonic() - started
    assert not [entry for entry in waiting_on if "kopf" in entry[1] or "crucible" in entry[1]], waiting_on
    print(
        f"deleted md in {md_took:.2f} s, tj in {tj_took:.2f} s, the namespace in {took:.1f} s: {waiting_on}"
    )


@pytest.mark.slow
async def test_an_older_operators_kopf_finalizer_is_removed_by_the_new_one(
    cluster: RealCluster, operator: OperatorThread
) -> None:
    await operator.stop()

    async def create_with_finalizer(kind: str, name: str, spec: dict) -> str:
        body = {
            "apiVersion": GROUP_VERSION,
            "kind": kind,
            "metadata": {"name": name, "finalizers": [KOPF_FINALIZER]},
            "spec": spec,
        }
        await cluster.api.call(
            "POST", resource_path(f"{GROUP_VERSION}/{PLURALS[kind]}", cluster.namespace), body
        )
        return path_of(cluster, kind, name)

    await create_with_finalizer("ModelDeployment", "old-md", {"model": {"selector": {"matchLabels": LABELS}}})
    await create_with_finalizer("TuningJob", "old-tj", {**SEARCH, "maxTrials": 1, "parallelism": 1})
    stuck = await create_with_finalizer("ModelDeployment", "stuck", {"model": {"trainingRun": "none"}})
    # What the defect looked like: with the operator away, the deletion waits on its finalizer.
    await cluster.api.call("DELETE", stuck)
    await asyncio.sleep(2)
    assert (await cluster.api.get(stuck))["metadata"]["deletionTimestamp"]

    await operator.start()
    started = time.monotonic()
    while await cluster.api.get(stuck) is not None:
        assert time.monotonic() - started < 30, "the deletion still waits on the old finalizer"
        await asyncio.sleep(0.2)

    def finalizers_left() -> list[str]:
        return [
            finalizer
            for resource, name in ((DEPLOYMENTS, "old-md"), (JOBS, "old-tj"))
            for finalizer in cluster.get(resource, name)["metadata"].get("finalizers") or []
        ]

    await eventually(lambda: not finalizers_left(), 30, "the old finalizers removed")


@pytest.mark.slow
async def test_deleting_the_served_training_run_is_said_and_a_selector_picks_the_next_best(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    await train(cluster, instant_kubelet, "best", 0.95)
    await train(cluster, instant_kubelet, "second", 0.90)
    await cluster.create_resource("ModelDeployment", "pinned", {"model": {"trainingRun": "best"}})
    picking = {"model": {"selector": {"matchLabels": LABELS}}, "rollout": {"strategy": "RollingUpdate"}}
    await cluster.create_resource("ModelDeployment", "picker", picking)

    def served(name: str) -> str | None:
        return (status_of(cluster, DEPLOYMENTS, name).get("currentModel") or {}).get("trainingRun")

    def ready(name: str) -> dict:
        return condition_of(status_of(cluster, DEPLOYMENTS, name), "Ready")

    for name in ("pinned", "picker"):
        await eventually(
            lambda name=name: served(name) == "best" and ready(name).get("status") == "True", 30, name
        )
    servers = cluster.get(SERVERS, "pinned-stable")

    await cluster.delete_resource("TrainingRun", "best")

    # The pinned one says its run is gone, in a condition and an Event, and keeps serving it: the
    # artifact is still there and a working server is never torn down for a deleted object.
    def model_deleted() -> dict:
        gone = condition_of(status_of(cluster, DEPLOYMENTS, "pinned"), "ModelAvailable")
        return gone if gone.get("reason") == "ModelDeleted" else {}

    gone = await eventually(model_deleted, 20, "pinned says its model's run was deleted")
    assert gone["status"] == "False" and gone["message"].startswith("TrainingRun best was deleted;")
    assert served("pinned") == "best" and ready("pinned")["status"] == "True"

    def event_of(name: str, reason: str) -> dict | None:
        return next(
            (
                event
                for event in cluster.objects_of("v1/events").values()
                if event["involvedObject"]["name"] == name and event["reason"] == reason
            ),
            None,
        )

    event = await eventually(lambda: event_of("pinned", "ModelDeleted"), 10, "a ModelDeleted Event")
    assert event["type"] == "Warning" and "TrainingRun best was deleted" in event["message"]
    await asyncio.sleep(2)  # ticks, resyncs and Deployment events come and go: the servers stay as they are
    after = cluster.get(SERVERS, "pinned-stable")
    assert after["spec"] == servers["spec"]
    assert after["metadata"]["generation"] == servers["metadata"]["generation"]
    assert len(instant_kubelet.pods_of("pinned-stable")) == 1

    # The one that picks its model promotes the next best passing run, the usual way.
    await eventually(
        lambda: served("picker") == "second" and ready("picker").get("status") == "True", 30, "next"
    )
    status = status_of(cluster, DEPLOYMENTS, "picker")
    assert [(h["action"], h["trainingRun"], h["previous"]) for h in status["history"]] == [
        ("Promoted", "second", "best")
    ]
    assert condition_of(status, "ModelAvailable") == {}  # it serves a run that exists again
