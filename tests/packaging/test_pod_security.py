"""Every pod the chart or the operator creates meets the `restricted` Pod Security Standard, plus a
read-only root file system with a writable /tmp."""

from __future__ import annotations

import pytest

from crucible.operator.config import OperatorConfig
from crucible.operator.kube.artifacts import VolumePath
from crucible.operator.modeldeployment.manifests import server_deployment
from crucible.operator.modeldeployment.plan import plan_serving
from crucible.operator.trainingrun.manifests import training_children
from crucible.operator.trainingrun.plan import plan_training
from crucible.s3 import S3Location
from tests.packaging.chart import SCENARIOS, needs_helm, of_kind, render

# Volume types the restricted profile allows.
ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def violations(pod: dict) -> list[str]:
    """What in this pod spec breaks the restricted profile (https://kubernetes.io/docs/concepts/security/pod-security-standards/)."""
    found = []
    pod_security = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            found.append(flag)
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            found.append(f"volume {volume['name']}: {kinds - ALLOWED_VOLUMES}")
    scratch = {v["name"] for v in pod.get("volumes") or [] if "emptyDir" in v}
    for container in [*(pod.get("initContainers") or []), *pod["containers"]]:
        name = container["name"]
        security = container.get("securityContext") or {}
        if security.get("privileged"):
            found.append(f"{name}: privileged")
        if security.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = security.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities")
        if not security.get("runAsNonRoot", pod_security.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot is not true")
        if security.get("runAsUser", pod_security.get("runAsUser")) == 0:
            found.append(f"{name}: runs as uid 0")
        seccomp = (security.get("seccompProfile") or pod_security.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile is {seccomp}")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            found.append(f"{name}: hostPort")
        if security.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: root file system is writable")
        if not any(
            m["mountPath"] == "/tmp" and m["name"] in scratch for m in container.get("volumeMounts") or []
        ):
            found.append(f"{name}: no writable emptyDir at /tmp")
    return found


def test_the_check_catches_what_it_should() -> None:
    bare = {
        "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}]}],
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "hostNetwork": True,
    }
    found = " ".join(violations(bare))
    for expected in (
        "hostNetwork",
        "hostPath",
        "allowPrivilegeEscalation",
        "ALL",
        "runAsNonRoot",
        "seccompProfile",
        "hostPort",
        "writable",
        "/tmp",
    ):
        assert expected in found


@needs_helm
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_chart_pods_meet_restricted(scenario: str) -> None:
    manifests = render(SCENARIOS[scenario])
    pods = [
        w["spec"]["template"]["spec"] for w in of_kind(manifests, "Deployment") + of_kind(manifests, "Job")
    ]
    assert pods
    for pod in pods:
        assert violations(pod) == []


CONFIG = OperatorConfig.model_validate({"artifacts": {"claim": "artifacts"}})
S3_CONFIG = OperatorConfig.model_validate(
    {"artifacts": {"s3": {"uri": "s3://models/crucible", "credentialsSecret": "s3-creds"}}}
)
POOLS = [("cpu", 0), ("gpu", 1)]
# Artifacts on a volume, or in S3 (downloaded and uploaded through the writable /tmp).
STORES = {
    "pvc": (CONFIG, VolumePath("artifacts", "ml/run/u1")),
    "s3": (S3_CONFIG, S3Location("models", "ml/run/u1")),
}


@pytest.mark.parametrize("store", sorted(STORES))
@pytest.mark.parametrize(("pool", "gpu"), POOLS)
def test_trainer_job_pods_meet_restricted(pool: str, gpu: int, store: str) -> None:
    config, _ = STORES[store]
    body = {
        "metadata": {"name": "digits", "namespace": "ml", "uid": "u1"},
        "spec": {"resources": {"nodePool": pool, "gpu": gpu}},
    }
    _, job = training_children(plan_training(body, config), config.training)
    assert violations(job["spec"]["template"]["spec"]) == []


@pytest.mark.parametrize("store", sorted(STORES))
@pytest.mark.parametrize(("pool", "gpu"), POOLS)
def test_model_server_pods_meet_restricted(pool: str, gpu: int, store: str) -> None:
    config, artifact = STORES[store]
    body = {
        "metadata": {"name": "digits", "namespace": "ml", "uid": "u2"},
        "spec": {"model": {"trainingRun": "run"}, "resources": {"nodePool": pool, "gpu": gpu}},
    }
    plan = plan_serving(body, artifact, config)
    deployment = server_deployment(plan, "run", "ab" * 32)
    assert violations(deployment["spec"]["template"]["spec"]) == []
