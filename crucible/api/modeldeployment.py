"""The ModelDeployment spec: which trained model to serve, where, and how it rolls out.

Room is left for what comes with tuning and promotion: `model.tuningJob` and `model.selector` beside
`model.trainingRun`, a `promotion` policy, and a `Canary` rollout strategy with steps and analysis.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from crucible.api.common import SpecModel
from crucible.api.kube import DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN, QUANTITY_PATTERN

RolloutStrategy = Literal["RollingUpdate"]


class ModelSourceSpec(SpecModel):
    """Which model to serve: for now one TrainingRun, pinned by name."""

    training_run: str = Field(
        ...,
        min_length=1,
        max_length=DNS_SUBDOMAIN_MAX,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of a TrainingRun in the same namespace. Its artifact is served only once the run "
        "has Succeeded with every gate passed; changing this rolls the servers to the new model.",
    )


class ServingResourcesSpec(SpecModel):
    """Where each server replica runs and what it may use."""

    node_pool: str = Field(
        "cpu",
        min_length=1,
        max_length=63,
        description="A node pool defined in the operator configuration (cpu and gpu by default).",
    )
    cpu: str = Field(
        "1",
        pattern=QUANTITY_PATTERN,
        description="CPU request and limit per replica (a Kubernetes quantity).",
    )
    memory: str = Field(
        "1Gi",
        pattern=QUANTITY_PATTERN,
        description="Memory request and limit per replica (a Kubernetes quantity).",
    )
    gpu: int = Field(0, ge=0, le=16, description="GPUs per replica; a gpu pool needs at least 1.")


class ServerSpec(SpecModel):
    """Settings of `crucible serve` in each replica."""

    max_batch_size: int = Field(
        16, ge=1, le=1024, description="Most images the server batches into one forward pass."
    )
    max_batch_delay_ms: int = Field(
        5, ge=0, le=10_000, description="Longest wait, in milliseconds, for a batch to fill before it runs."
    )


class RolloutSpec(SpecModel):
    """How a new model replaces the running one. Serving capacity never drops: maxUnavailable is 0."""

    strategy: RolloutStrategy = Field(
        "RollingUpdate",
        description="RollingUpdate: new replicas start and become ready before old ones stop "
        "(maxUnavailable 0).",
    )
    max_surge: int = Field(
        1, ge=1, le=100, description="Extra replicas allowed above `replicas` while a rollout is running."
    )


class ModelDeploymentSpec(SpecModel):
    """A ModelDeployment: serve a model that passed its gates, on a node pool, behind one Service."""

    model: ModelSourceSpec = Field(..., description="Which model to serve.")
    replicas: int = Field(
        1, ge=1, le=100, description="Server replicas; more than 1 also gets a PodDisruptionBudget."
    )
    resources: ServingResourcesSpec = Field(default_factory=ServingResourcesSpec)
    server: ServerSpec = Field(default_factory=ServerSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
