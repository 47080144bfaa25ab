"""`spec.retraining` of a ModelDeployment: when the operator starts a new TrainingRun from a template on
its own (a cron schedule, enough new labelled examples in the capture store, or drift of the predicted
classes), how many may run at once, and how many finished ones are kept.

On the ModelDeployment rather than a kind of its own: the ModelDeployment already knows the selector
its candidates must match, where its servers capture and label requests, and what it serves now (which
run must never be removed). One object, no extra CRD or RBAC, and one `kubectl get md` shows the loop.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field, field_validator, model_validator

from crucible.api.common import SpecModel
from crucible.api.cron import CronError, parse
from crucible.api.trainingrun import TrainingRunSpec

RETRAINED_FOR = "crucible.dev/retrained-for"


class RunTemplateMetadata(SpecModel):
    """Metadata every created TrainingRun gets."""

    labels: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        description="Labels of each created run; they must match spec.model.selector, so the run is a "
        "candidate for promotion. crucible.dev/retrained-for: <this ModelDeployment> is added.",
    )


class RunTemplate(SpecModel):
    """The TrainingRun each trigger creates (named <ModelDeployment>-retrain-<n>)."""

    metadata: RunTemplateMetadata = Field(default_factory=RunTemplateMetadata)
    spec: TrainingRunSpec = Field(
        ...,
        description="The TrainingRun spec, such as the original dataset plus the capture store's labelled/ "
        "view in dataset.sources. An output.uri is a base: each run writes below it, in <run name>/.",
    )


class DriftTrigger(SpecModel):
    """Retrain when the served predicted-class distribution departs from the training distribution."""

    threshold: float = Field(
        ...,
        gt=0,
        le=1,
        description="Jensen-Shannon divergence (base 2, 0..1) between the predicted-class shares of the "
        "servers' sliding window and the training class shares, as the capture endpoint reports it, at "
        "or above which the trigger fires.",
    )
    min_samples: int = Field(
        100,
        ge=1,
        le=10_000_000,
        description="Fewest predictions in the window for the divergence to count.",
    )


class RetrainingSpec(SpecModel):
    """Start a new TrainingRun from a template when a trigger fires. Set at least one of schedule,
    minNewLabels, drift."""

    template: RunTemplate = Field(..., description="The TrainingRun to create.")
    schedule: str | None = Field(
        None,
        max_length=128,
        description="A five-field cron schedule in UTC (minute hour day-of-month month day-of-week), such "
        "as '0 3 * * *', or @hourly, @daily, @weekly, @monthly.",
    )
    min_new_labels: int | None = Field(
        None,
        ge=1,
        le=100_000_000,
        description="Retrain once at least this many labelled examples joined the capture store since the "
        "last retraining run was created.",
    )
    drift: DriftTrigger | None = Field(None, description="Retrain when the predictions drift.")
    max_concurrent: int = Field(
        1, ge=1, le=20, description="Most retraining runs not yet finished; a trigger beyond it waits."
    )
    history_limit: int = Field(
        5,
        ge=1,
        le=100,
        description="Finished retraining runs kept; older ones are deleted (their artifacts are kept), "
        "never the one served or being promoted.",
    )

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse(value).next_after(datetime.now(UTC))
            except CronError as error:
                raise ValueError(str(error)) from None
        return value

    @model_validator(mode="after")
    def _has_a_trigger(self) -> RetrainingSpec:
        if self.schedule is None and self.min_new_labels is None and self.drift is None:
            raise ValueError("set at least one trigger: schedule, minNewLabels or drift")
        return self
