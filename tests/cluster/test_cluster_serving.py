"""ModelDeployment end to end on the real control plane: the operator (as the chart's ServiceAccount)
serves only runs that passed their gates; the real Deployment controller rolls the servers out, whose
pods the test kubelet reports ready (no server process runs here: see test_cluster_canary.py)."""

from __future__ import annotations

import asyncio

from tests.conftest import FAST_SPEC
from tests.operator.e2e import DEPLOYMENTS, condition_of, run_phase, status_of
from tests.operator.fake_cluster import eventually
from tests.operator.node_agent import NodeAgent, node_name
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import RealCluster

SERVERS = "apps/v1/deployments"


def serving(run: str, **spec: object) -> dict:
    return {"model": {"trainingRun": run}, **spec}


async def ready(
    cluster: RealCluster, name: str, state: str = "True", reason: str | None = None, timeout: float = 20
) -> dict:
    def check() -> bool:
        condition = condition_of(status_of(cluster, DEPLOYMENTS, name), "Ready")
        return condition.get("status") == state and (reason is None or condition.get("reason") == reason)

    await eventually(check, timeout, f"{name} Ready={state} {reason or ''}")
    return status_of(cluster, DEPLOYMENTS, name)


def owned_children(cluster: RealCluster) -> list[tuple[str, str]]:
    """(kind, name) of what the operator made, each owned by its controller with blockOwnerDeletion."""
    found = []
    for resource in (
        "v1/configmaps",
        "batch/v1/jobs",
        SERVERS,
        "v1/services",
        "policy/v1/poddisruptionbudgets",
    ):
        for body in cluster.objects_of(resource).values():
            owners = [o for o in body["metadata"].get("ownerReferences") or [] if o.get("controller")]
            if owners and owners[0]["kind"] in ("TrainingRun", "ModelDeployment"):
                assert owners[0]["blockOwnerDeletion"], body["metadata"]["name"]
                found.append((resource, body["metadata"]["name"]))
    return found


def pod_template(cluster: RealCluster, name: str) -> dict:
    return cluster.get(SERVERS, f"{name}-stable")["spec"]["template"]


async def test_a_model_deployment_on_the_gpu_pool_renders_gpu_scheduling(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    await cluster.create_resource("TrainingRun", "digits", FAST_SPEC)
    run = await run_phase(cluster, "digits", ("Succeeded",), timeout=60)
    spec = serving("digits", replicas=2, resources={"nodePool": "gpu", "gpu": 1, "memory": "2Gi"})
    await cluster.create_resource("ModelDeployment", "digits", spec)
    status = await ready(cluster, "digits")

    pod = pod_template(cluster, "digits")["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}
    command = container["command"]
    assert (
        container["image"].startswith("crucible-server-cuda:")
        and command[command.index("--device") + 1] == "cuda"
    )
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "artifacts", "readOnly": True}
    assert container["volumeMounts"][0]["subPath"] == run["artifact"]["uri"].split("/", 3)[3]

    assert status["currentModel"] == {
        "trainingRun": "digits",
        "uri": run["artifact"]["uri"],
        "sha256": run["artifact"]["sha256"],
        "accuracy": 0.97,
    }
    assert status["url"] == f"http://digits-server.{cluster.namespace}.svc:80"
    assert (status["replicas"], status["availableReplicas"]) == (2, 2)
    assert cluster.get("v1/services", "digits-server")
    assert cluster.get("v1/services", "digits-stable")["spec"]["selector"]["crucible.dev/track"] == "stable"
    assert cluster.get("policy/v1/poddisruptionbudgets", "digits-server")
    # ConfigMap, Job, Deployment, the Service of every track and the stable-only one, PDB
    assert len(owned_children(cluster)) == 6
    # The real scheduler put both replicas on the gpu pool's Node.
    pods = [
        p
        for p in cluster.objects_of("v1/pods").values()
        if p["metadata"]["name"].startswith("digits-stable-")
    ]
    assert len(pods) == 2 and {p["spec"]["nodeName"] for p in pods} == {node_name("gpu")}


async def test_a_run_that_has_not_succeeded_is_never_served(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    await cluster.create_resource("ModelDeployment", "md", serving("missing"))
    status = await ready(cluster, "md", "False", "TrainingRunNotFound")
    assert "missing does not exist" in condition_of(status, "Ready")["message"]

    await cluster.create_resource("TrainingRun", "broken", {**FAST_SPEC, "resources": {"nodePool": "tpu"}})
    await run_phase(cluster, "broken", ("Failed",), timeout=60)
    await cluster.patch_spec("ModelDeployment", "md", serving("broken"))
    status = await ready(cluster, "md", "False", "TrainingRunNotSucceeded")
    assert "TrainingRun broken is Failed: InvalidSpec" in condition_of(status, "Ready")["message"]
    assert not cluster.objects_of(SERVERS) and not cluster.objects_of("v1/services")

    # A good run is served; pinning the broken one again leaves the servers as they are.
    await cluster.create_resource("TrainingRun", "good", FAST_SPEC)
    await run_phase(cluster, "good", ("Succeeded",), timeout=60)
    await cluster.patch_spec("ModelDeployment", "md", serving("good"))
    await ready(cluster, "md")
    before = cluster.get(SERVERS, "md-stable")
    await cluster.patch_spec("ModelDeployment", "md", serving("broken"))
    status = await ready(cluster, "md", "False", "TrainingRunNotSucceeded")
    assert condition_of(status, "Ready")["message"].endswith("still serving good")
    assert status["currentModel"]["trainingRun"] == "good"
    after = cluster.get(SERVERS, "md-stable")
    # The Deployment controller may still write the Deployment's status; its spec is what must stay.
    await asyncio.sleep(1)
    after = cluster.get(SERVERS, "md-stable")
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


async def test_a_deployment_waiting_for_its_run_serves_it_once_it_succeeds(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    await cluster.create_resource("ModelDeployment", "early", serving("later"))
    await ready(cluster, "early", "False", "TrainingRunNotFound")
    await cluster.create_resource("TrainingRun", "later", FAST_SPEC)
    status = await ready(cluster, "early", timeout=60)
    assert status["currentModel"]["trainingRun"] == "later"


async def test_changing_the_pinned_run_rolls_the_same_deployment(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    for name in ("first", "second"):
        await cluster.create_resource("TrainingRun", name, FAST_SPEC)
        await run_phase(cluster, name, ("Succeeded",), timeout=60)
    await cluster.create_resource("ModelDeployment", "md", serving("first", replicas=2))
    await ready(cluster, "md")
    assert cluster.get("policy/v1/poddisruptionbudgets", "md-server")

    await cluster.patch_spec("ModelDeployment", "md", serving("second", replicas=1))
    await eventually(
        lambda: status_of(cluster, DEPLOYMENTS, "md")["currentModel"]["trainingRun"] == "second", 20
    )
    await ready(cluster, "md")
    assert list(cluster.objects_of(SERVERS)) == ["md-stable"]
    template = pod_template(cluster, "md")
    second = status_of(cluster, "crucible.dev/v1alpha1/trainingruns", "second")
    assert template["metadata"]["annotations"]["crucible.dev/training-run"] == "second"
    assert template["metadata"]["annotations"]["crucible.dev/model-sha256"] == second["artifact"]["sha256"]
    assert cluster.get(SERVERS, "md-stable")["metadata"]["generation"] == 2
    assert not cluster.objects_of("policy/v1/poddisruptionbudgets")  # one replica needs no budget

    def deployed_events() -> int:  # Events are posted in the background, shortly after
        return [event["reason"] for event in cluster.objects_of("v1/events").values()].count("ModelDeployed")

    await eventually(lambda: deployed_events() == 2, 10, "two ModelDeployed Events")


async def test_an_invalid_model_deployment_names_the_field(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    await cluster.create_resource("ModelDeployment", "md", serving("x", resources={"nodePool": "tpu"}))
    status = await ready(cluster, "md", "False", "InvalidSpec")
    message = condition_of(status, "Ready")["message"]
    assert message == "spec.resources.nodePool: node pool 'tpu' is not configured; allowed values: cpu, gpu"
    assert not cluster.objects_of(SERVERS)
