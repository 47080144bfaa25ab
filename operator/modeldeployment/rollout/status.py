"""The promotion half of a ModelDeployment's status (pure): candidate, canary, history, rejected, and the
Degraded and Promoted conditions, laid over what serving_status says about the stable servers."""

from __future__ import annotations

from crucible.api.status import CanaryStatus, Condition, HistoryEntry, ModelDeploymentStatus, ServedModel
from crucible.operator.kube.conditions import carried_over, condition, now

HISTORY_LIMIT = 10
DEGRADED, PROMOTED, PROGRESSING = "Degraded", "Promoted", "Progressing"


def history_with(
    previous: dict, action: str, run: str, before: str | None, reason: str, message: str
) -> list:
    entry = HistoryEntry(
        time=now(), action=action, training_run=run, previous=before, reason=reason, message=message
    )
    kept = [HistoryEntry.model_validate(item) for item in previous.get("history") or []]
    return [*kept, entry][-HISTORY_LIMIT:]


def with_promotion(
    body: dict,
    status: ModelDeploymentStatus,
    *,
    candidate: ServedModel | None = None,
    canary: CanaryStatus | None = None,
    history: list | None = None,
    rejected: list[str] | None = None,
    extra: list[Condition] = (),  # type: ignore[assignment]
) -> ModelDeploymentStatus:
    """`status` with the promotion fields; the Degraded and Promoted conditions carry over unless
    replaced by `extra` (a Progressing in `extra` replaces the stable servers' own)."""
    previous = body.get("status") or {}
    replaced = {item.type for item in extra}
    old = [
        Condition.model_validate(item)
        for item in previous.get("conditions") or []
        if item.get("type") in (DEGRADED, PROMOTED) and item.get("type") not in replaced
    ]
    own = [item for item in status.conditions if item.type not in replaced]
    conditions = carried_over(previous.get("conditions"), [*own, *extra]) + old
    return status.model_copy(
        update={
            "candidate_model": candidate,
            "canary": canary,
            "history": history if history is not None else _entries(previous.get("history")),
            "rejected": rejected if rejected is not None else previous.get("rejected"),
            "conditions": conditions,
        }
    )


def _entries(items: list[dict] | None) -> list[HistoryEntry] | None:
    return None if items is None else [HistoryEntry.model_validate(item) for item in items]


def progressing(message: str, reason: str = "Canary") -> Condition:
    return condition(PROGRESSING, True, reason, message)


def promoted(run: str, message: str) -> Condition:
    return condition(PROMOTED, True, "CandidatePromoted", f"{run}: {message}")


def awaiting_approval(run: str, annotation: str) -> Condition:
    return condition(PROMOTED, False, "AwaitingApproval", f"approve with the annotation {annotation}: {run}")


def degraded(run: str, message: str) -> Condition:
    return condition(DEGRADED, True, "CanaryRolledBack", f"{run} was rolled back: {message}")


def recovered(run: str) -> Condition:
    return condition(DEGRADED, False, "CandidatePromoted", f"{run} was promoted")


def held_back(body: dict, status: ModelDeploymentStatus, reason: str, message: str) -> ModelDeploymentStatus:
    """The served model stays although a candidate beat its metric (a lead within chance, for one):
    Promoted=False says why, until the next promotion replaces it."""
    previous = (body.get("status") or {}).get("conditions")
    kept = [item for item in status.conditions if item.type != PROMOTED]
    why = carried_over(previous, [condition(PROMOTED, False, reason, message)])
    return status.model_copy(update={"conditions": [*kept, *why]})
