"""The ModelDeployment spec: which trained model to serve, where, how a better one is promoted, and how
it rolls out (replace in place, or a canary analysed from the servers' live metrics).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from crucible.api.common import SpecModel
from crucible.api.kube import DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN, QUANTITY_PATTERN
from crucible.api.retraining import RetrainingSpec

RolloutStrategy = Literal["RollingUpdate", "Canary"]
ServingBackend = Literal["auto", "torch", "onnxruntime"]
# Go-style durations as Argo Rollouts and kubectl write them: 30s, 5m, 1h30m.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
METRIC_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
CAPTURE_DESTINATION_PATTERN = r"^(pvc://[a-z0-9][a-z0-9.-]*/[^/].*|s3://[a-z0-9][a-z0-9.-]+/?.*)$"


class LabelSelectorRequirement(SpecModel):
    """One label rule, as in a Kubernetes label selector."""

    key: str = Field(..., min_length=1, max_length=317, description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        ..., description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[str] = Field(
        default_factory=list, max_length=64, description="Values for In and NotIn; empty otherwise."
    )


class LabelSelector(SpecModel):
    """A Kubernetes label selector over TrainingRuns in the same namespace."""

    match_labels: dict[str, str] = Field(default_factory=dict, description="Labels a run must all have.")
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=16, description="Label rules a run must all meet."
    )


class ModelSourceSpec(SpecModel):
    """Which model to serve: exactly one of a pinned TrainingRun, a TuningJob's best trial, or the best
    of the TrainingRuns a label selector matches."""

    training_run: str | None = Field(
        None,
        min_length=1,
        max_length=DNS_SUBDOMAIN_MAX,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of a TrainingRun in the same namespace. Its artifact is served only once the run "
        "has Succeeded with every gate passed; changing this rolls the servers to the new model.",
    )
    tuning_job: str | None = Field(
        None,
        min_length=1,
        max_length=DNS_SUBDOMAIN_MAX,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of a TuningJob in the same namespace: its best trial "
        "(status.bestTrial.trainingRun) is the candidate, promoted under spec.promotion whenever a "
        "better trial appears.",
    )
    selector: LabelSelector | None = Field(
        None,
        description="TrainingRuns matching this selector are the candidates: the best one that passes "
        "spec.promotion is promoted, so a new, better run reaches production by itself.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSourceSpec:
        chosen = [self.training_run is not None, self.tuning_job is not None, self.selector is not None]
        if sum(chosen) != 1:
            raise ValueError("set exactly one of trainingRun, tuningJob, selector")
        return self

    @property
    def automatic(self) -> bool:
        """Whether the operator picks the model (tuningJob, selector) rather than a person pinning it."""
        return self.training_run is None


class PromotionSpec(SpecModel):
    """When a candidate replaces the current model. The operator configuration may set platform-wide
    minimums (required gates, minimum metric values) that this can tighten but never loosen."""

    policy: Literal["Auto", "Manual"] = Field(
        "Auto",
        description="Auto: promote an eligible candidate at once. Manual: show it in status.candidateModel "
        "and wait for the annotation crucible.dev/approve: <candidate TrainingRun name>.",
    )
    metric: str = Field(
        "accuracy",
        min_length=1,
        max_length=63,
        pattern=METRIC_PATTERN,
        description="The TrainingRun status.metrics entry candidates are compared by.",
    )
    direction: Literal["maximize", "minimize"] = Field(
        "maximize", description="Whether a higher (maximize) or lower (minimize) metric is better."
    )
    min_improvement: float = Field(
        0.0, ge=0, le=1e9, description="How much a candidate must beat the current model's metric by."
    )
    required_gates: list[str] | None = Field(
        None,
        max_length=32,
        description="Gates a candidate must have run and passed; unset: every gate the run had must pass.",
    )
    require_significance: bool = Field(
        False,
        description="Also require McNemar's exact test on the shared held-out set (from both runs' "
        "status.outcomes) to find the candidate better than the current model with p < alpha; "
        "otherwise the candidate waits with reason NotSignificant.",
    )
    alpha: float = Field(
        0.05, gt=0, lt=1, description="The significance level of requireSignificance (default 0.05)."
    )


class CanaryStep(SpecModel):
    """One step of a canary: a share of the traffic, held for a while under analysis."""

    weight: int = Field(
        ..., ge=1, le=100, description="Percent of the replicas (so of the traffic) running the candidate."
    )
    pause: str = Field(
        "30s",
        max_length=32,
        pattern=DURATION_PATTERN,
        description="How long the step lasts (at least one passing analysis), such as 30s or 5m.",
    )


class AnalysisSpec(SpecModel):
    """Limits the candidate's live metrics are held to, read from its pods' Prometheus endpoints."""

    max_error_rate: float = Field(
        0.01, ge=0, le=1, description="Most share of inference requests answered 5xx (0.01 is 1%)."
    )
    max_latency_p95_ms: float = Field(
        500, gt=0, le=600_000, description="Highest 95th-percentile request latency, in milliseconds."
    )
    min_requests: int = Field(
        20, ge=0, le=1_000_000, description="Fewest inference requests in a window for a verdict."
    )
    interval: str = Field(
        "30s",
        max_length=32,
        pattern=DURATION_PATTERN,
        description="How often the candidate's metrics are read; each window is the change between reads.",
    )


def _default_steps() -> list[CanaryStep]:
    return [CanaryStep(weight=25), CanaryStep(weight=50), CanaryStep(weight=100)]


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
    max_queue_images: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description="Most images waiting for the model in one replica; beyond it requests get 503 with "
        "Retry-After at once (shed load rather than answer late).",
    )
    backend: ServingBackend = Field(
        "auto",
        description="What runs the forward pass (`crucible serve --backend`). auto: ONNX Runtime when the "
        "model card marks the ONNX copy verified against PyTorch at export, else PyTorch; torch or "
        "onnxruntime force one (onnxruntime refuses to start a model whose ONNX check failed).",
    )
    quantize: Literal["int8"] | None = Field(
        None,
        description="Serve the dynamically quantized int8 copy (`crucible serve --quantize int8`). The "
        "server refuses it unless the card records its held-out accuracy drop within the training run's "
        "serve.maxAccuracyDrop.",
    )


class RolloutSpec(SpecModel):
    """How a new model replaces the running one. Serving capacity never drops: maxUnavailable is 0."""

    strategy: RolloutStrategy = Field(
        "RollingUpdate",
        description="RollingUpdate: new replicas start and become ready before old ones stop "
        "(maxUnavailable 0). Canary: the new model runs beside the old one through `steps`, analysed at "
        "each, then is promoted or rolled back.",
    )
    max_surge: int = Field(
        1, ge=1, le=100, description="Extra replicas allowed above `replicas` while a rollout is running."
    )
    steps: list[CanaryStep] = Field(
        default_factory=_default_steps,
        min_length=1,
        max_length=20,
        description="Canary steps, weights not decreasing; traffic follows the replica ratio (no mesh).",
    )
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    progress_deadline: str = Field(
        "10m",
        max_length=32,
        pattern=DURATION_PATTERN,
        description="Longest wait for a canary step's replicas to become ready; past it the candidate is "
        "rolled back (a model that cannot start is never promoted, and never waits forever).",
    )

    @model_validator(mode="after")
    def _weights_grow(self) -> RolloutSpec:
        weights = [step.weight for step in self.steps]
        if weights != sorted(weights):
            raise ValueError(f"steps: weights must not decrease, got {weights}")
        return self


class CaptureSpec(SpecModel):
    """Store a sampled share of the requests the servers answer (the input and the prediction) so that
    people can label them and a later TrainingRun can learn from them. Off unless sampleRate is set."""

    sample_rate: float = Field(
        0.0, ge=0, le=1, description="Share of requests stored, 0..1 (0, the default, turns capture off)."
    )
    destination: str | None = Field(
        None,
        max_length=1024,
        pattern=CAPTURE_DESTINATION_PATTERN,
        description="Where: pvc://<claim>/<path> (mounted read-write into the servers) or "
        "s3://<bucket>/<prefix> (with the operator's S3 credentials, as artifacts). Captured, labelled "
        "images appear under <destination>/labelled/<class>/, a dataset source for a TrainingRun.",
    )
    max_bytes_per_day: int | None = Field(
        None,
        ge=1,
        description="Most bytes each server replica stores per UTC day; beyond it requests are not stored "
        "(counted in crucible_capture_dropped_total). Unset: no limit.",
    )

    @model_validator(mode="after")
    def _destination_when_on(self) -> CaptureSpec:
        if self.sample_rate > 0 and not self.destination:
            raise ValueError("destination: required when sampleRate is above 0")
        if self.destination and ".." in self.destination.split("/"):
            raise ValueError("destination: must not contain '..'")
        return self


class ModelDeploymentSpec(SpecModel):
    """A ModelDeployment: serve a model that passed its gates, on a node pool, behind one Service."""

    model: ModelSourceSpec = Field(..., description="Which model to serve.")
    replicas: int = Field(
        1, ge=1, le=100, description="Server replicas; more than 1 also gets a PodDisruptionBudget."
    )
    resources: ServingResourcesSpec = Field(default_factory=ServingResourcesSpec)
    server: ServerSpec = Field(default_factory=ServerSpec)
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    capture: CaptureSpec = Field(default_factory=CaptureSpec)
    retraining: RetrainingSpec | None = Field(
        None,
        description="Start a new TrainingRun from a template when a schedule, new labels or drift says so; "
        "it passes its gates and, picked by spec.model.selector, is promoted like any other run.",
    )

    @model_validator(mode="after")
    def _retrained_runs_are_candidates(self) -> ModelDeploymentSpec:
        """A retraining run that the selector does not pick would train for nothing."""
        if self.retraining is None:
            return self
        if self.model.selector is None:
            raise ValueError("retraining needs model.selector: the runs it creates are promoted through it")
        labels = self.retraining.template.metadata.labels
        missing = {k: v for k, v in self.model.selector.match_labels.items() if labels.get(k) != v}
        if missing:
            raise ValueError(
                f"retraining.template.metadata.labels must include model.selector.matchLabels {missing}, "
                "or the runs it creates would never be candidates"
            )
        return self
