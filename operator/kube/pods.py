"""What every pod the operator creates shares: its plan (node pool, image, size, volumes) with the checks
that make one, and the manifest pieces built from it (placement, resources, volumes, environment,
security). Trainer Jobs and server Deployments both build on these (pure, no API calls)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crucible.api.kube import QUANTITY_EXAMPLES, is_quantity
from crucible.api.manifest import InvalidSpec
from crucible.operator.kube.config import ImagesConfig, NodePool, S3ArtifactsConfig

if TYPE_CHECKING:
    from crucible.operator.config import OperatorConfig


@dataclass(frozen=True)
class Mount:
    """A PersistentVolumeClaim (or a directory of it) mounted into the main container."""

    claim: str
    path: str
    read_only: bool
    sub_path: str | None = None


@dataclass(frozen=True)
class PodPlan:
    """What every pod of a resource shares: placement, image and size."""

    pool: NodePool
    images: ImagesConfig
    cpu: str
    memory: str
    gpu: int
    mounts: list[Mount] = field(default_factory=list)
    # Set when the pod reads or writes an S3 artifact: its credentials and endpoint reach it as env.
    s3: S3ArtifactsConfig | None = None

    @property
    def device(self) -> str:
        return "cuda" if self.gpu else "cpu"


def check_quantities(cpu: str, memory: str, root: str) -> None:
    for name, value in (("cpu", cpu), ("memory", memory)):
        if not is_quantity(value):
            raise InvalidSpec(
                f"{root}.{name}", f"{value!r} is not a Kubernetes quantity ({QUANTITY_EXAMPLES})"
            )


def node_pool(config: OperatorConfig, pool_name: str, gpu: int, root: str) -> NodePool:
    pool = config.pool(pool_name, f"{root}.nodePool")
    if gpu and not pool.has_gpus:
        gpu_pools = ", ".join(sorted(name for name, p in config.node_pools.items() if p.has_gpus)) or "none"
        raise InvalidSpec(f"{root}.gpu", f"node pool {pool_name!r} has no GPUs; pools with GPUs: {gpu_pools}")
    if pool.has_gpus and not gpu:
        raise InvalidSpec(f"{root}.gpu", f"node pool {pool_name!r} is a GPU pool; set gpu >= 1")
    return pool


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
    # A claim mounted read-write anywhere in the pod (a server's capture directory beside its model)
    # must not be a read-only volume.
    written = {mount.claim for mount in plan.mounts if not mount.read_only}
    for mount in plan.mounts:
        name = volume_name(mount.claim)
        claim = {"claimName": mount.claim}
        if mount.claim not in written:
            claim["readOnly"] = True
        volumes.setdefault(name, {"name": name, "persistentVolumeClaim": claim})
        entry = {"name": name, "mountPath": mount.path, "readOnly": mount.read_only}
        if mount.sub_path:
            entry["subPath"] = mount.sub_path
        mounts.append(entry)
    volumes[TMP_VOLUME] = {"name": TMP_VOLUME, "emptyDir": {}}
    mounts.append({"name": TMP_VOLUME, "mountPath": "/tmp"})
    return list(volumes.values()), mounts


def main_container(plan: PodPlan, name: str, image: str, command: list[str], mounts: list[dict]) -> dict:
    """The container every workload runs its command in: the plan's image, size and environment, the
    given volume mounts, and the restricted security context. Callers add their probes and ports."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": plan.images.pull_policy,
        "command": command,
        "env": env(plan),
        "resources": resources(plan),
        "volumeMounts": mounts,
        "securityContext": dict(CONTAINER_SECURITY),
    }
