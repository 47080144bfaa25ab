"""spec.retraining's decisions (pure): which trigger fired, or why none did; the next run's name and
manifest from the template; which old runs the history limit removes; the status that says so.

Everything is derived from what can be read again after a restart: the runs this ModelDeployment owns
(each records the trigger and the label count it was created for, in annotations), the capture
endpoint's counts, and status.retraining. A run created just before the operator stopped is found on
the next round, so a trigger never creates the same run twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from crucible import API_GROUP
from crucible.api.cron import first_firing, parse
from crucible.api.retraining import RETRAINED_FOR, RetrainingSpec
from crucible.api.status import RetrainingStatus, RetrainingTrigger
from crucible.operator.kube import naming

TRIGGER = f"{API_GROUP}/retrain-trigger"
LABELS_AT_START = f"{API_GROUP}/retrain-labels"
SCHEDULE, NEW_LABELS, DRIFT = "Schedule", "NewLabels", "Drift"
FINISHED = ("Succeeded", "Failed")


@dataclass(frozen=True)
class Capture:
    """What the capture endpoint (GET /v2/models/{name}/capture) says, as far as triggers care."""

    labelled: int
    window: int = 0
    divergence: float | None = None

    @classmethod
    def from_document(cls, document: dict) -> Capture:
        drift = document.get("drift") or {}
        divergence = drift.get("divergence")
        return cls(
            labelled=int(document.get("labelled") or 0),
            window=int(drift.get("window") or 0),
            divergence=None if divergence is None else float(divergence),
        )


@dataclass(frozen=True)
class Fired:
    reason: str  # SCHEDULE, NEW_LABELS or DRIFT
    message: str


@dataclass(frozen=True)
class Decision:
    status: RetrainingStatus
    create: dict | None = None  # the TrainingRun to create
    delete: list[str] = field(default_factory=list)  # finished runs beyond the history limit
    fired: Fired | None = None  # the trigger that created `create`
    waiting: str | None = None  # a trigger fired and waits (maxConcurrent): said once as an Event
    # The status had `create` not been made: what is written when the API server refuses it.
    without_run: RetrainingStatus | None = None

    def refused(self, why: str) -> Decision:
        """The API server refused the run (a template its rules reject): nothing changed but the message."""
        assert self.without_run is not None
        message = f"spec.retraining.template: the API server refused the TrainingRun: {why}"
        return Decision(self.without_run.model_copy(update={"message": message}))


def run_name(deployment: str, index: int) -> str:
    return f"{deployment}-retrain-{index}"


def run_index(deployment: str, name: str | None) -> int | None:
    """n of `<deployment>-retrain-<n>`; None for any other name."""
    match = re.fullmatch(re.escape(deployment) + r"-retrain-([0-9]+)", name or "")
    return int(match.group(1)) if match else None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _phase(run: dict) -> str:
    return (run.get("status") or {}).get("phase") or "Pending"


def _protected(deployment: dict) -> set[str]:
    """Runs the ModelDeployment serves or is promoting: never removed."""
    status = deployment.get("status") or {}
    names = {
        (status.get("currentModel") or {}).get("trainingRun"),
        (status.get("candidateModel") or {}).get("trainingRun"),
        (status.get("canary") or {}).get("candidate"),
    }
    return {name for name in names if name}


def retraining_run(deployment: dict, spec: RetrainingSpec, index: int, fired: Fired, labelled: int) -> dict:
    """The TrainingRun `<deployment>-retrain-<index>` from the template, owned by the ModelDeployment (it
    goes when the ModelDeployment goes; artifacts stay where the runs wrote them). A template output.uri
    is a base: each run writes below it, so no run writes over another's artifact."""
    metadata = deployment["metadata"]
    name = run_name(metadata["name"], index)
    template = spec.template.spec
    if template.output.uri:
        output = template.output.model_copy(update={"uri": f"{template.output.uri.rstrip('/')}/{name}"})
        template = template.model_copy(update={"output": output})
    labels = {
        **spec.template.metadata.labels,
        RETRAINED_FOR: naming.label_value(metadata["name"]),
        naming.PART_OF: "crucible",
        naming.MANAGED_BY: naming.MANAGER,
    }
    return {
        "apiVersion": naming.API_VERSION_STRING,
        "kind": "TrainingRun",
        "metadata": {
            "name": name,
            "namespace": metadata["namespace"],
            "labels": labels,
            "annotations": {TRIGGER: fired.reason, LABELS_AT_START: str(labelled)},
            "ownerReferences": [
                {
                    "apiVersion": naming.API_VERSION_STRING,
                    "kind": "ModelDeployment",
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": template.to_dict(),
    }


@dataclass(frozen=True)
class _Last:
    """The latest retraining run, as the runs and the status remember it."""

    index: int
    labels: int | None
    since: datetime | None  # when it was created (the schedule counts from there)


def _last(deployment: dict, runs: list[dict], previous: dict) -> _Last:
    name = deployment["metadata"]["name"]
    indexed = [(run_index(name, run["metadata"]["name"]), run) for run in runs]
    indexed = [(index, run) for index, run in indexed if index is not None]
    recorded = run_index(name, previous.get("lastRun")) or 0
    newest = max(indexed, key=lambda item: item[0], default=(0, None))
    labels = previous.get("labelsAtLastRun")
    since = _time((previous.get("lastTrigger") or {}).get("time"))
    if newest[1] is not None and newest[0] >= recorded:
        metadata = newest[1]["metadata"]
        counted = (metadata.get("annotations") or {}).get(LABELS_AT_START)
        labels = int(counted) if counted and counted.isdigit() else labels
        created = _time(metadata.get("creationTimestamp"))
        since = max(filter(None, [since, created]), default=None)
    since = since or _time(deployment["metadata"].get("creationTimestamp"))
    return _Last(max(newest[0], recorded), labels, since)


def _triggers(
    spec: RetrainingSpec,
    deployment: dict,
    previous: dict,
    last: _Last,
    capture: Capture | str | None,
    now: datetime,
) -> tuple[list[Fired], list[str]]:
    """(the triggers that fired, in the order schedule, labels, drift; why each other one did not)."""
    fired: list[Fired] = []
    quiet: list[str] = []
    if spec.schedule is not None:
        since = last.since or now
        at = first_firing(spec.schedule, since, now)
        if at is not None:
            fired.append(Fired(SCHEDULE, f"the schedule '{spec.schedule}' fired at {at.isoformat()}"))
        else:
            upcoming = parse(spec.schedule).next_after(since).isoformat()
            quiet.append(f"schedule: next at {upcoming}")
    if isinstance(capture, str) and (spec.min_new_labels is not None or spec.drift is not None):
        quiet.append(f"capture endpoint: {capture}")
        return fired, quiet
    if capture is None:
        return fired, quiet
    if spec.min_new_labels is not None:
        before = last.labels or 0
        new = capture.labelled - before if capture.labelled >= before else capture.labelled
        if new >= spec.min_new_labels:
            fired.append(Fired(NEW_LABELS, f"{new} new labels (minNewLabels {spec.min_new_labels})"))
        else:
            quiet.append(f"{new} new labels of {spec.min_new_labels} needed")
    if spec.drift is not None:
        threshold, needed = spec.drift.threshold, spec.drift.min_samples
        served = ((deployment.get("status") or {}).get("currentModel") or {}).get("trainingRun")
        if capture.window < needed or capture.divergence is None:
            quiet.append(f"drift: {capture.window} predictions in the window of {needed} needed")
        elif capture.divergence < threshold:
            quiet.append(f"drift: divergence {capture.divergence:.3f} < {threshold}")
        elif served is not None and previous.get("driftTriggeredFor") == served:
            quiet.append(
                f"drift: divergence {capture.divergence:.3f} >= {threshold}, already retrained for {served}"
            )
        else:
            fired.append(Fired(DRIFT, f"divergence {capture.divergence:.3f} >= {threshold}"))
    return fired, quiet


def _old_runs(runs: list[dict], deployment: dict, limit: int, keep: set[str]) -> list[str]:
    """Finished runs beyond the newest `limit` finished ones, except those served or being promoted."""
    name = deployment["metadata"]["name"]
    finished = [run for run in runs if _phase(run) in FINISHED]
    finished.sort(key=lambda run: run_index(name, run["metadata"]["name"]) or 0, reverse=True)
    protected = _protected(deployment) | keep
    return sorted(
        run["metadata"]["name"] for run in finished[limit:] if run["metadata"]["name"] not in protected
    )


def plan_retraining(
    deployment: dict,
    spec: RetrainingSpec,
    runs: list[dict],
    capture: Capture | str | None,
    now: datetime,
) -> Decision:
    """What to do this round. `runs`: the TrainingRuns this ModelDeployment owns; `capture`: the capture
    endpoint's reading, the reason it could not be read, or None when no trigger needs it."""
    previous = (deployment.get("status") or {}).get("retraining") or {}
    last = _last(deployment, runs, previous)
    active = sorted(run["metadata"]["name"] for run in runs if _phase(run) not in FINISHED)
    fired, quiet = _triggers(spec, deployment, previous, last, capture, now)
    labelled = capture.labelled if isinstance(capture, Capture) else None
    status = RetrainingStatus(
        last_trigger=RetrainingTrigger.model_validate(previous["lastTrigger"])
        if previous.get("lastTrigger")
        else None,
        last_run=previous.get("lastRun"),
        labels_at_last_run=last.labels,
        labelled=labelled,
        active_runs=active or None,
        drift_triggered_for=previous.get("driftTriggeredFor"),
    )
    delete = _old_runs(runs, deployment, spec.history_limit, set(active))
    if not fired:
        message = "no trigger fired: " + "; ".join(quiet) if quiet else "no trigger fired"
        return Decision(status.model_copy(update={"message": message}), delete=delete)
    reasons = ", ".join(trigger.reason for trigger in fired)
    if len(active) >= spec.max_concurrent:
        message = (
            f"{reasons} fired and waits: {len(active)} retraining run(s) not finished ({', '.join(active)}); "
            f"maxConcurrent {spec.max_concurrent}"
        )
        return Decision(status.model_copy(update={"message": message}), delete=delete, waiting=message)
    trigger = fired[0]
    detail = "; ".join(item.message for item in fired)
    without_run = status
    counted = labelled if labelled is not None else (last.labels or 0)
    run = retraining_run(deployment, spec, last.index + 1, trigger, counted)
    name = run["metadata"]["name"]
    served = ((deployment.get("status") or {}).get("currentModel") or {}).get("trainingRun")
    drifted = any(item.reason == DRIFT for item in fired)
    status = status.model_copy(
        update={
            "last_trigger": RetrainingTrigger(time=now, reason=trigger.reason, message=detail),
            "last_run": name,
            "labels_at_last_run": counted,
            "active_runs": sorted([*active, name]),
            "drift_triggered_for": served if drifted else status.drift_triggered_for,
            "message": f"created {name}: {detail}",
        }
    )
    fired_now = Fired(trigger.reason, detail)
    return Decision(status, create=run, delete=delete, fired=fired_now, without_run=without_run)
