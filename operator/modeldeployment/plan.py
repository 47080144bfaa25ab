"""A ModelDeployment, the artifact it serves and the operator configuration -> the plan of its servers
(pure, no API calls). A spec this cluster cannot serve (an unknown pool, a gpu count the pool cannot
give, an S3 artifact without S3 credentials) is raised as InvalidSpec naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from crucible.api.manifest import InvalidSpec, parse_spec
from crucible.api.modeldeployment import ModelDeploymentSpec
from crucible.operator.config import OperatorConfig
from crucible.operator.kube.artifacts import ArtifactLocation, VolumePath, parse_artifact_uri
from crucible.operator.kube.pods import Mount, PodPlan, node_pool
from crucible.s3 import S3Location

MODEL_DIR = "/model"
CAPTURE_DIR = "/capture"


@dataclass(frozen=True)
class ServingPlan:
    name: str
    namespace: str
    spec: ModelDeploymentSpec
    pod: PodPlan
    # `crucible serve --model`: the mounted directory, or the s3:// URI the server downloads.
    model: str = MODEL_DIR
    # `crucible serve --capture`: the mounted directory or the s3:// URI; None when capture is off.
    capture: str | None = None


def plan_serving(body: dict, artifact: ArtifactLocation, config: OperatorConfig) -> ServingPlan:
    """The servers of a ModelDeployment for one artifact; InvalidSpec when the spec cannot run here."""
    spec = parse_serving_spec(body)
    resources = spec.resources
    pool = node_pool(config, resources.node_pool, resources.gpu, "spec.resources")
    images = config.images_for(pool)
    metadata = body["metadata"]
    capture, capture_mounts = capture_destination(spec)
    needs_s3 = isinstance(artifact, S3Location) or isinstance(capture, S3Location)
    s3 = config.artifacts.s3
    if needs_s3 and s3 is None:
        field, uri = (
            ("status.artifact.uri", artifact.uri)
            if isinstance(artifact, S3Location)
            else ("spec.capture.destination", capture.uri)  # type: ignore[union-attr]
        )
        raise InvalidSpec(
            field,
            f"{uri} is in S3, and this operator has no S3 credentials for its servers "
            "(artifacts.s3 in its configuration)",
        )
    capture_arg = capture.uri if isinstance(capture, S3Location) else (CAPTURE_DIR if capture else None)
    if isinstance(artifact, S3Location):
        pod = PodPlan(pool, images, resources.cpu, resources.memory, resources.gpu, capture_mounts, s3=s3)
        return ServingPlan(metadata["name"], metadata["namespace"], spec, pod, artifact.uri, capture_arg)
    # Only the model's own directory is mounted, read-only: a server sees nothing else of the volume.
    mounts = [Mount(artifact.claim, MODEL_DIR, read_only=True, sub_path=artifact.path), *capture_mounts]
    pod = PodPlan(
        pool, images, resources.cpu, resources.memory, resources.gpu, mounts, s3=s3 if needs_s3 else None
    )
    return ServingPlan(metadata["name"], metadata["namespace"], spec, pod, capture=capture_arg)


def capture_destination(spec: ModelDeploymentSpec) -> tuple[VolumePath | S3Location | None, list[Mount]]:
    """Where the servers store captured requests, and the read-write mount a pvc:// one needs."""
    capture = spec.capture
    if capture.sample_rate <= 0 or not capture.destination:
        return None, []
    location = parse_artifact_uri(capture.destination, "spec.capture.destination")
    if isinstance(location, VolumePath):
        return location, [Mount(location.claim, CAPTURE_DIR, read_only=False, sub_path=location.path)]
    return location, []


def parse_serving_spec(body: dict) -> ModelDeploymentSpec:
    return parse_spec("ModelDeployment", body.get("spec"))  # type: ignore[return-value]


def check_serving_spec(body: dict, config: OperatorConfig) -> ModelDeploymentSpec:
    """InvalidSpec before anything is looked up: a bad spec is reported as such, not as a missing run."""
    spec = parse_serving_spec(body)
    node_pool(config, spec.resources.node_pool, spec.resources.gpu, "spec.resources")
    return spec
