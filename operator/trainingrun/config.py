"""The TrainingRun section of the operator configuration (`training:`): limits of every trainer Job."""

from __future__ import annotations

from pydantic import Field

from crucible.api.common import SpecModel


class TrainingConfig(SpecModel):
    """Limits of every trainer Job."""

    backoff_limit: int = Field(
        2, ge=0, le=10, description="Retries after infrastructure failures (a failed gate never retries)."
    )
    active_deadline_seconds: int = Field(24 * 3600, ge=60, description="A run is stopped after this long.")
    ttl_seconds_after_finished: int = Field(
        7 * 24 * 3600, ge=0, description="Finished Jobs and their pods are deleted after this long."
    )
    progress_interval_seconds: int = Field(
        30,
        ge=1,
        le=3600,
        description=(
            "How often a running trainer's log is read for the run's status.progress, and a run whose "
            "pod waits (a claim missing or Pending, an image not pulled) is looked at again."
        ),
    )
