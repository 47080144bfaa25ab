"""Kubernetes-style conditions: a transition time that moves only when the status really changes."""

from __future__ import annotations

from datetime import UTC, datetime

from crucible.api.status import Condition


def now() -> datetime:
    """UTC, whole seconds: the precision of Kubernetes timestamps."""
    return datetime.now(UTC).replace(microsecond=0)


def condition(
    kind: str, state: bool | None, reason: str, message: str = "", generation: int | None = None
) -> Condition:
    status = "Unknown" if state is None else ("True" if state else "False")
    return Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now(),
        observed_generation=generation,
    )


def carried_over(previous: list[dict] | None, current: list[Condition]) -> list[Condition]:
    """`current`, keeping each condition's old lastTransitionTime when its status did not change."""
    before = {item.get("type"): item for item in previous or []}
    result = []
    for item in current:
        old = before.get(item.type)
        if old and old.get("status") == item.status and old.get("lastTransitionTime"):
            since = datetime.fromisoformat(old["lastTransitionTime"])
            item = item.model_copy(update={"last_transition_time": since})
        result.append(item)
    return result


def find(conditions: list[dict] | None, kind: str) -> dict | None:
    return next((item for item in conditions or [] if item.get("type") == kind), None)
