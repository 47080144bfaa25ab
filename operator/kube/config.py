"""The sections of the operator configuration every kind needs: node pools, images, the artifacts store."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

import crucible
from crucible.api.common import SpecModel
from crucible.api.kube import DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN
from crucible.api.manifest import InvalidSpec
from crucible.s3 import S3Location, parse_s3_uri

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


class ImagesConfig(SpecModel):
    """Container images for the pods the operator creates."""

    trainer: str = Field(f"crucible-trainer:{crucible.__version__}", description="Runs `crucible-train`.")
    server: str = Field(f"crucible-server:{crucible.__version__}", description="Runs `crucible serve`.")
    pull_policy: str = Field("IfNotPresent", description="imagePullPolicy of every container.")


class NodePool(SpecModel):
    """Where pods of this pool may run: scheduling rules and the extended resource its GPUs are."""

    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels pods must match.")
    tolerations: list[dict] = Field(
        default_factory=list, description="Taints of the pool's nodes to tolerate."
    )
    gpu_resource: str | None = Field(
        None, description="Extended resource a gpu count requests (nvidia.com/gpu); unset: the pool has none."
    )
    runtime_class_name: str | None = Field(None, description="RuntimeClass of pods on this pool (nvidia).")
    images: ImagesConfig | None = Field(None, description="Images for this pool (CUDA builds on gpu pools).")

    @property
    def has_gpus(self) -> bool:
        return self.gpu_resource is not None


def default_pools() -> dict[str, NodePool]:
    return {
        "cpu": NodePool(),
        "gpu": NodePool(
            node_selector={"nvidia.com/gpu.present": "true"},
            tolerations=[GPU_TOLERATION],
            gpu_resource="nvidia.com/gpu",
            images=ImagesConfig(
                trainer=f"crucible-trainer-cuda:{crucible.__version__}",
                server=f"crucible-server-cuda:{crucible.__version__}",
            ),
        ),
    }


class S3ArtifactsConfig(SpecModel):
    """An S3-compatible store for artifacts. The operator never reads the Secret (it has no RBAC on
    Secrets): trainer and server pods get its keys as environment variables."""

    uri: str = Field(description="Base URI, s3://<bucket>[/<prefix>]; runs write below it.")
    credentials_secret: str = Field(
        description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, in each namespace where "
        "runs and ModelDeployments live."
    )
    endpoint: str | None = Field(None, description="Endpoint of a store other than AWS (MinIO, Ceph).")
    region: str | None = Field(None, description="Region; unset: the store's default.")

    @field_validator("uri")
    @classmethod
    def _base_uri(cls, uri: str) -> str:
        try:
            return parse_s3_uri(uri, "uri", need_prefix=False).uri
        except InvalidSpec as error:
            raise ValueError(error.detail) from None

    @field_validator("endpoint")
    @classmethod
    def _endpoint_url(cls, endpoint: str | None) -> str | None:
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"{endpoint!r} must be an http:// or https:// URL")
        return endpoint

    @field_validator("credentials_secret")
    @classmethod
    def _secret_name(cls, name: str) -> str:
        if len(name) > DNS_SUBDOMAIN_MAX or not re.match(DNS_SUBDOMAIN_PATTERN, name):
            raise ValueError(f"{name!r} is not a Secret name (lowercase a-z, 0-9, '-' and '.')")
        return name

    @property
    def base(self) -> S3Location:
        return parse_s3_uri(self.uri, "artifacts.s3.uri", need_prefix=False)


class ArtifactsConfig(SpecModel):
    """Where artifacts are written to and served from: a volume, or an S3-compatible store."""

    claim: str = Field(
        "crucible-artifacts",
        description="PersistentVolumeClaim for runs whose spec.output.uri is unset or a relative path "
        "(when s3 is unset).",
    )
    mount_path: str = Field("/artifacts", description="Where artifact volumes are mounted in pods.")
    s3: S3ArtifactsConfig | None = Field(
        None, description="Set: runs whose spec.output.uri is unset or a relative path write here instead."
    )
