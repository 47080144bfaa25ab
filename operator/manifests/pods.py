"""Pod-level pieces every workload shares: placement on its node pool, size, volumes, environment,
security."""

from __future__ import annotations

from crucible.operator.planning import PodPlan

TMP_VOLUME = "tmp"

# The `restricted` Pod Security Standard, as the images' own user (images/Dockerfile.runtime);
# fsGroup lets that user write to artifact volumes.
RUNTIME_UID = 65532
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": RUNTIME_UID,
    "runAsGroup": RUNTIME_UID,
    "fsGroup": RUNTIME_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
# A read-only root file system still needs somewhere for caches (torch, matplotlib, pip).
WRITABLE_HOME = [
    {"name": "HOME", "value": "/tmp"},
    {"name": "MPLCONFIGDIR", "value": "/tmp/matplotlib"},
    {"name": "PYTHONUNBUFFERED", "value": "1"},
]


# The names boto3 reads natively: neither the trainer nor the server needs a flag for them.
S3_CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
S3_ENDPOINT_ENV, S3_REGION_ENV = "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"


def env(plan: PodPlan) -> list[dict]:
    """The main container's environment: a writable home, plus the S3 store's settings when the pod
    reads or writes an S3 artifact. Credentials come straight from the Secret (secretKeyRef): the
    operator never reads it, and a Secret without the keys keeps the pod from starting, saying why."""
    entries = [dict(item) for item in WRITABLE_HOME]
    s3 = plan.s3
    if s3 is None:
        return entries
    for key in S3_CREDENTIAL_KEYS:
        secret_key = {"name": s3.credentials_secret, "key": key}
        entries.append({"name": key, "valueFrom": {"secretKeyRef": secret_key}})
    if s3.endpoint:
        entries.append({"name": S3_ENDPOINT_ENV, "value": s3.endpoint})
    if s3.region:
        entries.append({"name": S3_REGION_ENV, "value": s3.region})
    return entries


def placement(plan: PodPlan) -> dict:
    """nodeSelector, tolerations and runtime class of the plan's node pool."""
    pool = plan.pool
    spec: dict = {}
    if pool.node_selector:
        spec["nodeSelector"] = dict(pool.node_selector)
    if pool.tolerations:
        spec["tolerations"] = [dict(toleration) for toleration in pool.tolerations]
    if pool.runtime_class_name:
        spec["runtimeClassName"] = pool.runtime_class_name
    return spec


def resources(plan: PodPlan) -> dict:
    """Requests equal limits (Guaranteed QoS: a run or a server is never the first to be evicted)."""
    amounts: dict[str, str] = {"cpu": plan.cpu, "memory": plan.memory}
    if plan.gpu and plan.pool.gpu_resource:
        amounts[plan.pool.gpu_resource] = str(plan.gpu)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def volume_name(claim: str) -> str:
    return f"pvc-{claim}"[:63].rstrip("-")


def claim_volumes(plan: PodPlan) -> tuple[list[dict], list[dict]]:
    """(volumes, volumeMounts) for the plan's claims plus a scratch /tmp."""
    volumes: dict[str, dict] = {}
    mounts = []
    for mount in plan.mounts:
        name = volume_name(mount.claim)
        claim = {"claimName": mount.claim}
        if mount.read_only:
            claim["readOnly"] = True
        volumes.setdefault(name, {"name": name, "persistentVolumeClaim": claim})
        entry = {"name": name, "mountPath": mount.path, "readOnly": mount.read_only}
        if mount.sub_path:
            entry["subPath"] = mount.sub_path
        mounts.append(entry)
    volumes[TMP_VOLUME] = {"name": TMP_VOLUME, "emptyDir": {}}
    mounts.append({"name": TMP_VOLUME, "mountPath": "/tmp"})
    return list(volumes.values()), mounts
