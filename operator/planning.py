"""From a resource and the operator configuration to a plan of what to run (pure, no API calls).

Everything a spec can get wrong for this cluster (an unknown pool, a gpu count the pool cannot give,
an artifact URI a pod cannot mount or reach) is found here and raised as InvalidSpec naming the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from crucible.api.kube import QUANTITY_EXAMPLES, is_quantity
from crucible.api.manifest import InvalidSpec, parse_spec
from crucible.api.modeldeployment import ModelDeploymentSpec
from crucible.api.trainingrun import TrainingRunSpec
from crucible.operator import naming
from crucible.operator.artifacts import (
    PVC_SCHEME,
    ArtifactLocation,
    mount_path,
    output_location,
    parse_pvc_uri,
)
from crucible.operator.config import ImagesConfig, NodePool, OperatorConfig, S3ArtifactsConfig
from crucible.s3 import S3Location

SPEC_DIR = "/etc/crucible"
SPEC_FILE = "spec.json"
DATA_ROOT = "/data"
MODEL_DIR = "/model"
# A trainer writing to S3 writes its files here first (the pod's /tmp emptyDir), then uploads them.
SCRATCH_OUTPUT_DIR = "/tmp/artifact"


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


@dataclass(frozen=True)
class TrainingPlan:
    name: str
    namespace: str
    spec_json: str
    output: ArtifactLocation
    output_dir: str
    pod: PodPlan
    # A TuningJob's trial: crucible-train's --study-* flags, so it reports to its study and can be pruned.
    study_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServingPlan:
    name: str
    namespace: str
    spec: ModelDeploymentSpec
    pod: PodPlan
    # `crucible serve --model`: the mounted directory, or the s3:// URI the server downloads.
    model: str = MODEL_DIR


def _quantities(cpu: str, memory: str, root: str) -> None:
    for name, value in (("cpu", cpu), ("memory", memory)):
        if not is_quantity(value):
            raise InvalidSpec(
                f"{root}.{name}", f"{value!r} is not a Kubernetes quantity ({QUANTITY_EXAMPLES})"
            )


def _pool(config: OperatorConfig, pool_name: str, gpu: int, root: str) -> NodePool:
    pool = config.pool(pool_name, f"{root}.nodePool")
    if gpu and not pool.has_gpus:
        gpu_pools = ", ".join(sorted(name for name, p in config.node_pools.items() if p.has_gpus)) or "none"
        raise InvalidSpec(f"{root}.gpu", f"node pool {pool_name!r} has no GPUs; pools with GPUs: {gpu_pools}")
    if pool.has_gpus and not gpu:
        raise InvalidSpec(f"{root}.gpu", f"node pool {pool_name!r} is a GPU pool; set gpu >= 1")
    return pool


def _dataset_mount(spec: TrainingRunSpec) -> tuple[TrainingRunSpec, list[Mount]]:
    """A pvc:// dataset is mounted read-only and the trainer is handed its local path instead."""
    uri = spec.dataset.uri
    if not uri or not uri.startswith(PVC_SCHEME):
        if uri and "://" in uri and not uri.startswith("file://"):
            scheme = uri.split("://", 1)[0]
            raise InvalidSpec(
                "spec.dataset.uri", f"scheme {scheme}:// is not supported; allowed: pvc://, file://, a path"
            )
        return spec, []
    location = parse_pvc_uri(uri, "spec.dataset.uri")
    root = mount_path(DATA_ROOT, location.claim)
    local = spec.model_copy(
        update={"dataset": spec.dataset.model_copy(update={"uri": f"{root}/{location.path}"})}
    )
    return local, [Mount(location.claim, root, read_only=True)]


def plan_training(body: dict, config: OperatorConfig) -> TrainingPlan:
    """The trainer Job of a TrainingRun; InvalidSpec when the spec cannot run here."""
    metadata = body["metadata"]
    spec: TrainingRunSpec = parse_spec("TrainingRun", body.get("spec"))  # type: ignore[assignment]
    resources = spec.resources
    _quantities(resources.cpu, resources.memory, "spec.resources")
    pool = _pool(config, resources.node_pool, resources.gpu, "spec.resources")
    s3 = config.artifacts.s3
    output = output_location(
        spec.output.uri,
        config.artifacts.claim,
        metadata["namespace"],
        metadata["name"],
        metadata["uid"],
        s3.base if s3 else None,
    )
    local_spec, mounts = _dataset_mount(spec)
    if isinstance(output, S3Location):
        output_dir, pod_s3 = SCRATCH_OUTPUT_DIR, s3
    else:
        output_root = mount_path(config.artifacts.mount_path, output.claim)
        output_dir, pod_s3 = f"{output_root}/{output.path}", None
        mounts = [Mount(output.claim, output_root, read_only=False), *mounts]
    return TrainingPlan(
        name=metadata["name"],
        namespace=metadata["namespace"],
        spec_json=json.dumps(local_spec.to_dict(), indent=2, sort_keys=True),
        output=output,
        output_dir=output_dir,
        pod=PodPlan(
            pool, config.images_for(pool), resources.cpu, resources.memory, resources.gpu, mounts, pod_s3
        ),
        study_args=study_args(body, config),
    )


def study_args(body: dict, config: OperatorConfig) -> tuple[str, ...]:
    """The trial's study flags, from the annotations its TuningJob set. A TrainingRun spec has no such
    fields (a trial's spec is the template's), and only a run a TuningJob controls gets them: any other
    run could otherwise write into a study by annotating itself."""
    annotations = body["metadata"].get("annotations") or {}
    study, number = annotations.get(naming.STUDY), annotations.get(naming.TRIAL_NUMBER)
    if not study or number is None or naming.controller_of(body, "TuningJob") is None:
        return ()
    return ("--study-storage", config.tuning.proxy_url(), "--study-name", study, "--trial-number", number)


def plan_serving(body: dict, artifact: ArtifactLocation, config: OperatorConfig) -> ServingPlan:
    """The servers of a ModelDeployment for one artifact; InvalidSpec when the spec cannot run here."""
    spec = parse_serving_spec(body)
    resources = spec.resources
    pool = _pool(config, resources.node_pool, resources.gpu, "spec.resources")
    images = config.images_for(pool)
    metadata = body["metadata"]
    if isinstance(artifact, S3Location):
        s3 = config.artifacts.s3
        if s3 is None:
            raise InvalidSpec(
                "status.artifact.uri",
                f"{artifact.uri} is in S3, and this operator has no S3 credentials to serve it with "
                "(artifacts.s3 in its configuration)",
            )
        pod = PodPlan(pool, images, resources.cpu, resources.memory, resources.gpu, s3=s3)
        return ServingPlan(metadata["name"], metadata["namespace"], spec, pod, model=artifact.uri)
    # Only the model's own directory is mounted, read-only: a server sees nothing else of the volume.
    mounts = [Mount(artifact.claim, MODEL_DIR, read_only=True, sub_path=artifact.path)]
    pod = PodPlan(pool, images, resources.cpu, resources.memory, resources.gpu, mounts)
    return ServingPlan(metadata["name"], metadata["namespace"], spec, pod)


def parse_serving_spec(body: dict) -> ModelDeploymentSpec:
    return parse_spec("ModelDeployment", body.get("spec"))  # type: ignore[return-value]


def check_serving_spec(body: dict, config: OperatorConfig) -> ModelDeploymentSpec:
    """InvalidSpec before anything is looked up: a bad spec is reported as such, not as a missing run."""
    spec = parse_serving_spec(body)
    _pool(config, spec.resources.node_pool, spec.resources.gpu, "spec.resources")
    return spec
