"""The retraining section of the operator configuration (`retraining:`): how often policies are checked."""

from __future__ import annotations

from pydantic import Field

from crucible.api.common import SpecModel


class RetrainingConfig(SpecModel):
    """How the operator evaluates each ModelDeployment's spec.retraining."""

    interval_seconds: int = Field(
        30,
        ge=1,
        le=3600,
        description="How often each policy is evaluated (its capture endpoint read, its schedule checked).",
    )
    capture_timeout_seconds: float = Field(
        5, gt=0, le=60, description="Longest wait for a server's capture endpoint to answer."
    )
