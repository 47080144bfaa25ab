"""A ModelDeployment, the artifact it serves and the operator configuration -> the plan of its servers
(pure, no API calls). A spec this cluster cannot serve (an unknown pool, a gpu count the pool cannot
give, an S3 artifact without S3 credentials) is raised as InvalidSpec naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from crucible.api.manifest import InvalidSpec, parse_spec
from crucible.api.modeldeployment import ModelDeploymentSpec
from crucible.operator.config import OperatorConfig
from crucible.operator.kube.artifacts import ArtifactLocation
from crucible.operator.kube.pods import Mount, PodPlan, node_pool
from crucible.s3 import S3Location

MODEL_DIR = "/model"


@dataclass(frozen=True)
class ServingPlan:
    name: str
    namespace: str
    spec: ModelDeploymentSpec
    pod: PodPlan
    # `crucible serve --model`: the mounted directory, or the s3:// URI the server downloads.
    model: str = MODEL_DIR


def plan_serving(body: dict, artifact: ArtifactLocation, config: OperatorConfig) -> ServingPlan:
    """The servers of a ModelDeployment for one artifact; InvalidSpec when the spec cannot run here."""
    spec = parse_serving_spec(body)
    resources = spec.resources
    pool = node_pool(config, resources.node_pool, resources.gpu, "spec.resources")
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
    node_pool(config, spec.resources.node_pool, spec.resources.gpu, "spec.resources")
    return spec
