"""Base model shared by every spec: camelCase field names, unknown fields refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class SpecModel(BaseModel):
    """Kubernetes specs are camelCase; Python code uses snake_case for the same fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    def to_dict(self) -> dict:
        """The spec as a user would write it (camelCase keys, defaults filled in)."""
        return self.model_dump(by_alias=True, mode="json")
