"""Typed models of what the operator writes into each resource's status (the CRDs' status schemas).

Conditions follow the Kubernetes shape that kstatus and Argo CD read. Fields left None are written as
null in a merge patch (nested ones too), which removes them, so a status never keeps a stale value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from crucible.api.tuningjob import Choice

TrainingPhase = Literal["Pending", "Running", "Succeeded", "Failed"]


class StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_patch(self) -> dict:
        """camelCase JSON for a merge patch: every None of a mapping, nested ones too, becomes null, which
        clears the old value (a merge patch merges nested mappings: a field left out would keep its old
        value, as canary.waitingSince did). Inside lists Nones are dropped: a list is replaced whole,
        and a null stored in it would be refused by the schema."""
        written = self.model_dump(by_alias=True, mode="json")
        names = [info.alias or name for name, info in type(self).model_fields.items()]
        return {name: _nulls_clear(written.get(name)) for name in names}


def _nulls_clear(value: object, in_list: bool = False) -> object:
    if isinstance(value, dict):
        return {
            key: _nulls_clear(item, in_list) for key, item in value.items() if not (in_list and item is None)
        }
    if isinstance(value, list):
        return [_nulls_clear(item, in_list=True) for item in value if item is not None]
    return value


class Condition(StatusModel):
    """One aspect of the resource's state, as True, False or Unknown, with a reason."""

    type: str = Field(..., max_length=316, description="Which aspect: Ready, GatesPassed, ...")
    status: Literal["True", "False", "Unknown"] = Field(..., description="True, False or Unknown.")
    reason: str = Field(..., max_length=1024, description="Why, as one CamelCase word.")
    message: str = Field("", max_length=32768, description="Why, for a person.")
    last_transition_time: datetime = Field(..., description="When the status last changed.")
    observed_generation: int | None = Field(
        None, ge=0, description="The metadata.generation this condition was computed for."
    )


class CheckStatus(StatusModel):
    """One measured check of a gate."""

    model_config = ConfigDict(extra="allow")

    value: float | None = Field(None, description="The measured value (null when it could not be measured).")
    threshold: float | None = Field(None, description="The bound the value is held to.")
    op: str | None = Field(None, description="How value is compared with threshold, such as <= or >=.")
    passed: bool = Field(..., description="Whether the check passed.")
    message: str | None = Field(None, description="What is wrong, in the data's words (failed checks only).")


class GateStatus(StatusModel):
    """A gate's verdict with every check it made."""

    model_config = ConfigDict(extra="allow")

    passed: bool = Field(..., description="Whether every check of the gate passed.")
    checks: dict[str, CheckStatus] = Field(default_factory=dict, description="Each check by name.")
    mean: float | None = Field(None, description="crossValidation: mean score over the folds.")
    std: float | None = Field(None, description="crossValidation: standard deviation of the fold scores.")
    folds: list[float] | None = Field(None, description="crossValidation: the score of each fold.")
    metric: str | None = Field(
        None, description="crossValidation, baseline, heldOut: the score used (balancedAccuracy, ...)."
    )
    baselines: dict[str, float] | None = Field(
        None, description="baseline: each trivial model's CV mean score on the same folds (majority, linear)."
    )
    lift: float | None = Field(None, description="baseline: the CV mean minus the best baseline's.")


class ArtifactStatus(StatusModel):
    """The exported model."""

    uri: str = Field(..., description="Where the artifact directory is, such as pvc://claim/path.")
    sha256: str = Field(..., description="sha256 of the weights file, checked by the server on load.")


class HeldOutOutcomes(StatusModel):
    """One bit per held-out image, in the split's order: did the exported model get it right."""

    # A newer trainer may add figures: kept out of status rather than refused.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    images: int = Field(..., ge=0, description="Images in the held-out split.")
    stride: int = Field(1, ge=1, description="The bits cover images 0, stride, 2 x stride, ... of the split.")
    bits: str = Field(..., max_length=4096, description="The bits, packed high bit first, base64.")


class LearningCurves(StatusModel):
    """The final fit, epoch by epoch."""

    # A newer trainer may add figures: kept out of status rather than refused.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    epoch: list[int] = Field(default_factory=list, description="Epoch numbers.")
    train_loss: list[float] | None = Field(None, description="Training loss per epoch.")
    train_accuracy: list[float] | None = Field(None, description="Training accuracy per epoch.")
    val_loss: list[float] | None = Field(None, description="Validation loss per epoch.")
    val_accuracy: list[float] | None = Field(None, description="Validation accuracy per epoch.")


class EvaluationSummary(StatusModel):
    """The exported model on the held-out split (model.json has the full report)."""

    # A newer trainer may add figures: kept out of status rather than refused.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    classes: list[str] = Field(default_factory=list, description="The classes, in the model's order.")
    precision: list[float] = Field(default_factory=list, description="Per class, in that order.")
    recall: list[float] = Field(default_factory=list, description="Per class, in that order.")
    f1: list[float] = Field(default_factory=list, description="Per class, in that order.")
    support: list[int] = Field(default_factory=list, description="Held-out images per class.")
    confusion: list[list[int]] = Field(
        default_factory=list, description="Confusion matrix: rows are true classes, columns predictions."
    )
    curves: LearningCurves | None = Field(None, description="The final fit's learning curves.")


class PruningStatus(StatusModel):
    """A tuning trial's link to its study, as the trainer reported it."""

    available: bool = Field(..., description="Whether the trial could report to its study (and be pruned).")
    reason: str | None = Field(
        None, description="Why not: the study proxy address the pod could not reach, and the error."
    )


class TrainingRunStatus(StatusModel):
    """What the run is doing or how it ended; written by the operator only."""

    phase: TrainingPhase | None = Field(None, description="Pending, Running, Succeeded or Failed.")
    reason: str | None = Field(
        None, description="Why the run failed (the failing gate, its value and bound), or why it cannot run."
    )
    job_name: str | None = Field(None, description="The trainer Job of this run.")
    start_time: datetime | None = Field(None, description="When the trainer Job started.")
    completion_time: datetime | None = Field(None, description="When the trainer Job ended.")
    observed_generation: int | None = Field(None, description="The metadata.generation this status is for.")
    gates: dict[str, GateStatus] | None = Field(None, description="Each gate's verdict and checks, by gate.")
    metrics: dict[str, float | None] | None = Field(
        None, description="Held-out and training metrics: accuracy, macroF1, loss, cvMean, ..."
    )
    artifact: ArtifactStatus | None = Field(None, description="The exported model, once the run succeeded.")
    progress: str | None = Field(
        None,
        max_length=512,
        description="While running: the trainer's stage and latest epoch, from its log (refreshed about "
        "every 30 s), such as `Cross-validation: fold 2/5 epoch 3/8 loss 0.41 acc 0.88 212 img/s`.",
    )
    fingerprints: dict[str, str] | None = Field(
        None,
        description="Digests of what the model was trained and judged on (dataset, classes, heldOut): two "
        "runs are comparable only when all three match.",
    )
    outcomes: HeldOutOutcomes | None = Field(
        None,
        description="Which held-out images the exported model got right: what promotion's "
        "requireSignificance tests (McNemar) against the served model's.",
    )
    evaluation: EvaluationSummary | None = Field(
        None, description="The held-out evaluation in short: per-class figures, confusion matrix, curves."
    )
    pruning: PruningStatus | None = Field(
        None,
        description="A TuningJob's trial: whether it could report to its study; when not, it trained "
        "without pruning.",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready (the model is usable) and GatesPassed."
    )


class ServedModel(StatusModel):
    """The model the servers run."""

    training_run: str = Field(..., description="The TrainingRun that produced it.")
    uri: str = Field(..., description="Its artifact.")
    sha256: str = Field(..., description="sha256 of its weights.")
    accuracy: float | None = Field(None, description="Its held-out accuracy when it was trained.")


class AnalysisStatus(StatusModel):
    """One verdict on the canary's live metrics, with the figures it rests on."""

    time: datetime = Field(..., description="When the metrics were read.")
    verdict: Literal["Wait", "Advance", "Promote", "Rollback"] = Field(..., description="What it led to.")
    requests: int = Field(..., description="Inference requests the candidate answered in the window.")
    error_rate: float | None = Field(None, description="Share of them answered 5xx.")
    latency_p95_ms: float | None = Field(None, description="Their 95th-percentile latency, milliseconds.")
    message: str = Field("", description="The verdict, for a person.")


class MetricsSample(StatusModel):
    """The candidate pods' counters at the start of the current analysis window (summed over pods)."""

    time: datetime = Field(..., description="When they were read.")
    requests: float = Field(..., description="Inference requests so far.")
    errors: float = Field(..., description="Of which answered 5xx.")
    buckets: dict[str, float] = Field(default_factory=dict, description="Latency histogram, by upper bound.")


class CanaryStatus(StatusModel):
    """Where the canary of the candidate stands: the step machine's state, kept in status so a restarted
    operator carries on where it was."""

    candidate: str = Field(..., description="The candidate's TrainingRun.")
    step: int = Field(..., description="The current step, from 1.")
    steps: int = Field(..., description="How many steps there are.")
    weight: int = Field(..., description="Percent of the replicas (so of the traffic) on the candidate.")
    phase: Literal["Starting", "Analysing", "Promoting"] = Field(
        ..., description="Starting: canary pods not ready yet; Analysing; Promoting: stable takes it."
    )
    step_started_at: datetime | None = Field(None, description="When the step's canary pods were ready.")
    waiting_since: datetime | None = Field(
        None, description="Since when the step's replicas have not all been ready (the progress deadline)."
    )
    analyses_passed: int = Field(0, description="Passing analyses in this step.")
    sample: MetricsSample | None = Field(None, description="Counters at the start of the window.")
    last_analysis: AnalysisStatus | None = Field(None, description="The latest verdict and its figures.")


class HistoryEntry(StatusModel):
    """A promotion or a rollback."""

    time: datetime = Field(..., description="When it happened.")
    action: Literal["Promoted", "RolledBack"] = Field(..., description="Promoted or RolledBack.")
    training_run: str = Field(..., description="The candidate's TrainingRun.")
    previous: str | None = Field(None, description="The TrainingRun served before.")
    reason: str = Field(..., description="Why, as one CamelCase word.")
    message: str = Field("", description="Why, for a person.")


class ModelDeploymentStatus(StatusModel):
    """What is being served and whether it is ready; written by the operator only."""

    observed_generation: int | None = Field(None, description="The metadata.generation this status is for.")
    current_model: ServedModel | None = Field(None, description="The model the servers run now.")
    candidate_model: ServedModel | None = Field(
        None, description="The model being promoted, or waiting for approval (spec.promotion.policy Manual)."
    )
    canary: CanaryStatus | None = Field(None, description="The canary rollout in progress, if any.")
    history: list[HistoryEntry] | None = Field(None, description="The latest promotions and rollbacks.")
    rejected: list[str] | None = Field(
        None, description="Candidates rolled back: never tried again (a new TrainingRun is a new candidate)."
    )
    deployment_name: str | None = Field(None, description="The Deployment running the servers.")
    service_name: str | None = Field(None, description="The Service in front of them.")
    url: str | None = Field(None, description="Where the servers answer inside the cluster.")
    replicas: int | None = Field(None, description="Server pods, ready or not.")
    ready_replicas: int | None = Field(None, description="Server pods passing their readiness probe.")
    updated_replicas: int | None = Field(None, description="Server pods running the current model.")
    available_replicas: int | None = Field(None, description="Server pods ready for minReadySeconds.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (serving the requested model), Progressing, Degraded (a candidate was rolled "
        "back) and Promoted.",
    )


class RetrainingTrigger(StatusModel):
    """A trigger of spec.retraining that created a run."""

    time: datetime = Field(..., description="When it fired.")
    reason: Literal["Schedule", "NewLabels", "Drift"] = Field(..., description="Which trigger fired.")
    message: str | None = Field(None, description="What it saw, such as how many new labels.")


class RetrainingStatus(StatusModel):
    """What spec.retraining did last, and why it does nothing now (written by the retraining loop)."""

    last_trigger: RetrainingTrigger | None = Field(None, description="The last trigger that created a run.")
    last_run: str | None = Field(None, description="The TrainingRun it created.")
    labels_at_last_run: int | None = Field(
        None, description="Labelled examples in the capture store when that run was created."
    )
    labelled: int | None = Field(None, description="Labelled examples in the capture store now.")
    active_runs: list[str] | None = Field(None, description="Retraining runs not finished yet.")
    drift_triggered_for: str | None = Field(
        None, description="The served run drift last retrained for (drift fires once per served model)."
    )
    message: str | None = Field(None, description="Why no trigger fired, or why one that fired waits.")


class ModelDeploymentStatusDocument(ModelDeploymentStatus):
    """What is being served and whether it is ready, and what spec.retraining did; written by the operator
    only. (The servers' part and `retraining` are written separately, neither clearing the other.)"""

    retraining: RetrainingStatus | None = Field(None, description="The retraining policy's state.")


class TrialCountsStatus(StatusModel):
    """Trials of the study by state."""

    complete: int = Field(0, description="Finished with a value.")
    pruned: int = Field(0, description="Stopped early by the pruner.")
    failed: int = Field(
        0, description="Failed (a gate failed, training failed, or the objective was missing)."
    )
    running: int = Field(0, description="Asked for and not finished: their TrainingRuns run or start.")
    waiting: int = Field(0, description="Enqueued and not started yet (the baseline trial).")


class TrialStatus(StatusModel):
    """One trial: its number, value, the parameters it trained with and its TrainingRun."""

    number: int = Field(..., description="The trial's number in the study, from 0.")
    state: str | None = Field(None, description="COMPLETE, PRUNED, FAIL, RUNNING or WAITING.")
    value: float | None = Field(None, description="The objective's value.")
    params: dict[str, Choice] = Field(default_factory=dict, description="Template path -> sampled value.")
    training_run: str | None = Field(None, description="The trial's TrainingRun.")


class TuningJobStatus(StatusModel):
    """How the search is going or how it ended; written by the operator only."""

    phase: Literal["Running", "Succeeded", "Failed"] | None = Field(
        None, description="Running, Succeeded (ran its course, a trial completed) or Failed."
    )
    reason: str | None = Field(None, description="Why the search ended, or why it cannot run.")
    study_name: str | None = Field(None, description="The Optuna study in the operator's study storage.")
    progress: str | None = Field(None, description="Finished trials / maxTrials, such as 3/12.")
    trial_counts: TrialCountsStatus | None = Field(None, description="Trials by state.")
    best_trial: TrialStatus | None = Field(None, description="The complete trial with the best value.")
    baseline_trial: TrialStatus | None = Field(None, description="Trial 0, the template's own values.")
    observed_generation: int | None = Field(None, description="The metadata.generation this status is for.")
    completion_time: datetime | None = Field(None, description="When the search ended.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready (the search ended with a best trial) and Progressing."
    )
