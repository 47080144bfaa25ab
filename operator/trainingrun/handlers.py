"""When kopf calls into a TrainingRun's reconciler (reconcile.py): the decorators say when, the bodies
say what."""

from __future__ import annotations

import kopf

from crucible.operator.kube import naming
from crucible.operator.kube.resources import RETRY_BACKOFF, TRAINING_RUNS
from crucible.operator.trainingrun.reconcile import has_not_finished


@kopf.on.resume(*TRAINING_RUNS, when=has_not_finished, backoff=RETRY_BACKOFF)
@kopf.on.create(*TRAINING_RUNS, backoff=RETRY_BACKOFF)
@kopf.on.update(*TRAINING_RUNS, field="spec", when=has_not_finished, backoff=RETRY_BACKOFF)
async def start_training(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: object) -> None:
    """Create the run's spec ConfigMap and trainer Job once; an invalid spec is reported, not retried."""
    await memo.training.start(body, patch)


@kopf.on.create("batch", "v1", "jobs", labels=naming.TRAINER_SELECTOR, backoff=RETRY_BACKOFF)
@kopf.on.field("batch", "v1", "jobs", field="status", labels=naming.TRAINER_SELECTOR, backoff=RETRY_BACKOFF)
async def report_training(body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    """A trainer Job appeared or changed: mirror it, and in the end the trainer's result, into its run."""
    await memo.training.report(body)


@kopf.on.event("batch", "v1", "jobs", labels=naming.TRAINER_SELECTOR)
async def trainer_job_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    """A trainer Job deleted before its result was recorded fails its run (no new Job behind its back)."""
    if event.get("type") == "DELETED":
        await memo.training.lost(body)


@kopf.index(*TRAINING_RUNS)
def running_runs(namespace: str, name: str, status: kopf.Status, **_: object) -> dict | None:
    """Runs whose trainer runs now: the ones whose log is read for status.progress (main.py starts the
    reader). An index, not a timer: a kopf timer would put a finalizer on every run it follows."""
    return {(namespace, name): True} if status.get("phase") == "Running" and status.get("jobName") else None


@kopf.index(*TRAINING_RUNS)
def waiting_runs(namespace: str, name: str, status: kopf.Status, **_: object) -> dict | None:
    """Runs whose pod waits with a reason (a claim missing or unbound, an image not pulled): looked at
    again every progressIntervalSeconds (main.py starts the loop), since what they wait for changes no
    field of their Job."""
    waiting = status.get("phase") == "Pending" and status.get("reason") and status.get("jobName")
    return {(namespace, name): True} if waiting else None
