"""The ModelDeployment section of the operator configuration (`promotion:`): platform-wide minimums for
automatic promotion."""

from __future__ import annotations

from pydantic import Field

from crucible.api.common import SpecModel


class PromotionConfig(SpecModel):
    """Platform-wide minimums for promoting a model automatically (tuningJob or selector sources). A
    ModelDeployment's spec.promotion may add gates and demand more, never less."""

    required_gates: list[str] = Field(
        default_factory=list, description="Gates every promoted run must have run and passed."
    )
    min_metric: dict[str, float] = Field(
        default_factory=dict,
        description="Lowest value of each named status.metrics entry a promoted run may have "
        "(accuracy: 0.9); a run without that metric is not promoted.",
    )
