"""The test kubelet on the real control plane: the real scheduler binds pods to its Nodes, the real Job,
Deployment and EndpointSlice controllers react to the pod status it writes."""

from __future__ import annotations

import base64
import time

import aiohttp
import pytest

from tests.operator.fake_cluster import eventually
from tests.operator.kube_api import resource_path
from tests.operator.node_agent import NodeAgent, node_name
from tests.operator.real_cluster import RealCluster
from tests.operator.service_proxy import ServiceProxy

PYTHON_SERVER = ["python", "-m", "http.server", "8000", "--bind", "0.0.0.0"]


def job(name: str, script: str, **container: object) -> dict:
    """A Job of one pod running `script` (its first argument: the termination-message path)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "python",
                            "command": ["python", "-c", script, "/dev/termination-log"],
                            **container,
                        }
                    ],
                }
            },
        },
    }


def condition(body: dict | None, kind: str) -> str | None:
    found = [c for c in ((body or {}).get("status") or {}).get("conditions") or [] if c["type"] == kind]
    return found[0]["status"] if found else None


async def test_nodes_carry_their_pools_labels_taints_and_gpus(cluster: RealCluster) -> None:
    gpu = await cluster.api.get(f"/api/v1/nodes/{node_name('gpu')}")
    cpu = await cluster.api.get(f"/api/v1/nodes/{node_name('cpu')}")
    assert gpu is not None and cpu is not None
    assert gpu["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert gpu["spec"]["taints"] == [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
    assert gpu["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert "taints" not in cpu["spec"] and "nvidia.com/gpu" not in cpu["status"]["allocatable"]


async def test_a_job_pod_runs_with_its_environment_and_its_termination_message_completes_the_job(
    cluster: RealCluster, kubelet: NodeAgent
) -> None:
    secret = {"metadata": {"name": "creds"}, "data": {"KEY": base64.b64encode(b"s3cr3t").decode()}}
    await cluster.create("v1/secrets", secret)
    await cluster.create("v1/configmaps", {"metadata": {"name": "settings"}, "data": {"greeting": "hello"}})
    script = (
        "import os, sys; open(sys.argv[1], 'w').write("
        "' '.join(os.environ[k] for k in ('SECRET', 'GREETING', 'POD', 'NAMESPACE', 'LITERAL')))"
    )
    env = [
        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "KEY"}}},
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "LITERAL", "value": "plain"},
    ]
    await cluster.create("batch/v1/jobs", job("env", script, env=env))

    await eventually(
        lambda: condition(cluster.get("batch/v1/jobs", "env"), "Complete") == "True", 30, "Job done"
    )
    (pod,) = cluster.objects_of("v1/pods").values()
    assert pod["spec"]["nodeName"] == node_name("cpu")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["message"] == f"s3cr3t hello {pod['metadata']['name']} {cluster.namespace} plain"
    assert (terminated["exitCode"], terminated["reason"], pod["status"]["phase"]) == (
        0,
        "Completed",
        "Succeeded",
    )
    assert kubelet.pods_run == [pod["metadata"]["name"]]


async def test_a_pod_killed_for_memory_reports_oom_killed_and_fails_its_job(
    cluster: RealCluster, kubelet: NodeAgent
) -> None:
    await cluster.create("batch/v1/jobs", job("hungry", "import time; time.sleep(60)"))
    await eventually(lambda: kubelet.running("hungry"), 30, "the pod runs")
    await eventually(lambda: kubelet.running("hungry")[0].process, 30, "its process started")
    kubelet.oom_kill(kubelet.running("hungry")[0].name)

    await eventually(
        lambda: condition(cluster.get("batch/v1/jobs", "hungry"), "Failed") == "True", 30, "Job failed"
    )
    (pod,) = cluster.objects_of("v1/pods").values()
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"], pod["status"]["phase"]) == (
        "OOMKilled",
        137,
        "Failed",
    )


async def test_the_api_server_reads_a_running_containers_log_from_the_test_kubelet(
    cluster: RealCluster, kubelet: NodeAgent
) -> None:
    """pods/log (`kubectl logs --tail`) goes through the API server to the Node's kubelet port over TLS."""
    script = "import time\nfor n in range(5): print('line', n, flush=True)\ntime.sleep(60)"
    await cluster.create("batch/v1/jobs", job("talker", script))
    await eventually(lambda: kubelet.running("talker"), 30, "the pod runs")
    pod = kubelet.running("talker")[0].name
    await eventually(lambda: "line 4" in kubelet.log(pod), 30, "it printed")
    path = f"/api/v1/namespaces/{cluster.namespace}/pods/{pod}/log"

    status, answer = await cluster.api.request("GET", path, container="main", tailLines="2")
    assert (status, answer["message"]) == (200, "line 3\nline 4\n")  # plain text, not JSON
    status, answer = await cluster.api.request("GET", path, container="main", tailLines="1", limitBytes="4")
    assert (status, answer["message"]) == (200, "line")
    status, answer = await cluster.api.request("GET", path, container="other")
    assert status == 400 and "container other is not valid" in answer["message"]


@pytest.mark.slow  # the Job controller backs off before it replaces a failed pod
async def test_pods_evicted_through_the_api_or_deleted_end_failed_and_their_job_replaces_them(
    cluster: RealCluster, kubelet: NodeAgent
) -> None:
    """`kubectl drain` (the Eviction API: DisruptionTarget, then deletion) and `kubectl delete pod`: the
    kubelet stops the container (SIGTERM) and moves the pod to Failed before confirming its deletion,
    which is when a Job with a podFailurePolicy counts the pod (or ignores it) and replaces it."""
    patient = job("patient", "import time; time.sleep(60)")
    patient["spec"] |= {
        "backoffLimit": 1,
        "podFailurePolicy": {
            "rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
            ]
        },
    }
    await cluster.create("batch/v1/jobs", patient)

    async def running(count: int) -> str:
        await eventually(lambda: len(kubelet.pods_run) == count, 30, f"pod {count} created")
        name = kubelet.pods_run[-1]
        await eventually(lambda: any(p.name == name and p.process for p in kubelet.running()), 30, name)
        return name

    first = await running(1)
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": first}}
    await cluster.api.call("POST", resource_path("v1/pods", cluster.namespace, first) + "/eviction", eviction)
    second = await running(2)
    await cluster.delete("v1/pods", second)
    await running(3)

    jobs = cluster.get("batch/v1/jobs", "patient")
    assert jobs["status"].get("failed", 0) == 1  # the deletion; the eviction is a disruption, ignored
    for name in (first, second):
        last = cluster.versions("v1/pods", name)[-1]["status"]
        terminated = last["containerStatuses"][0]["state"]["terminated"]
        assert (last["phase"], terminated["exitCode"], terminated["reason"]) == ("Failed", 143, "Error")
        disrupted = [c for c in last["conditions"] if c["type"] == "DisruptionTarget"]
        assert [c["reason"] for c in disrupted] == (["EvictionByEvictionAPI"] if name == first else [])


async def test_a_gpu_pod_is_scheduled_on_the_gpu_pool_only(cluster: RealCluster, kubelet: NodeAgent) -> None:
    gpu = job("gpu", "pass", resources={"limits": {"nvidia.com/gpu": "1"}})
    gpu["spec"]["template"]["spec"] |= {
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    await cluster.create("batch/v1/jobs", gpu)
    await eventually(
        lambda: condition(cluster.get("batch/v1/jobs", "gpu"), "Complete") == "True", 30, "Job done"
    )
    (pod,) = cluster.objects_of("v1/pods").values()
    assert pod["spec"]["nodeName"] == node_name("gpu")


async def test_a_deployment_rolls_out_once_its_pods_pass_their_probe_and_serves_through_its_service(
    cluster: RealCluster, serving_kubelet: NodeAgent, services: ServiceProxy
) -> None:
    labels = {"app": "web"}
    container = {
        "name": "web",
        "image": "python",
        "command": PYTHON_SERVER,
        "ports": [{"name": "http", "containerPort": 8000}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        "lifecycle": {"preStop": {"sleep": {"seconds": 1}}},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }
    service = {
        "metadata": {"name": "web"},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }
    await cluster.create("v1/services", service)
    await cluster.create("apps/v1/deployments", deployment)

    def available() -> bool:
        status = (cluster.get("apps/v1/deployments", "web") or {}).get("status") or {}
        return status.get("readyReplicas") == 2 and status.get("updatedReplicas") == 2

    await eventually(available, 60, "the Deployment rolled out")
    pods = serving_kubelet.pods_of("web")
    assert len(pods) == 2 and len({pod.ip for pod in pods}) == 2

    def both_are_endpoints() -> bool:  # the EndpointSlice controller follows pod readiness shortly after
        endpoints = services.backends(cluster.namespace, "web")
        return not isinstance(endpoints, str) and len(endpoints) == 2

    await eventually(both_are_endpoints, 30, "both pods are the Service's endpoints")
    url = await services.url("web")
    served_by = set()
    async with aiohttp.ClientSession() as session:
        for _ in range(4):
            async with session.get(url) as response:
                assert response.status == 200
                served_by.add(response.headers["X-Served-By"])
    assert served_by == {pod.name for pod in pods}

    # Scaled down, a pod leaves the endpoints, sleeps its preStop, gets SIGTERM, and is gone.
    started = time.monotonic()
    await cluster.api.call(
        "PATCH", f"/apis/apps/v1/namespaces/{cluster.namespace}/deployments/web", {"spec": {"replicas": 1}},
        "application/merge-patch+json",
    )  # fmt: skip
    await eventually(lambda: len(cluster.objects_of("v1/pods")) == 1, 30, "one pod left")
    assert time.monotonic() - started >= 1
    (stopped,) = [pod for pod in pods if pod.name not in cluster.objects_of("v1/pods")]
    assert stopped.process is not None and stopped.process.returncode == -15  # SIGTERM
