"""The operator's kopf entry points: each decorator says when, each body says what (in training.py
and serving.py). Importing this module registers the handlers; `crucible operator` runs them."""

from __future__ import annotations

import asyncio
import logging
import threading

import kopf

from crucible import API_GROUP, API_VERSION
from crucible.operator import auth, naming
from crucible.operator.client import Kube
from crucible.operator.config import load_config
from crucible.operator.serving import Serving
from crucible.operator.training import Training, has_not_finished
from crucible.operator.tuning import Tuning

TRAINING_RUNS = (API_GROUP, API_VERSION, "trainingruns")
MODEL_DEPLOYMENTS = (API_GROUP, API_VERSION, "modeldeployments")
RETRY_BACKOFF = 10
TUNING_JOBS = (API_GROUP, API_VERSION, "tuningjobs")
ROLLOUT_TICK = 2  # seconds; analysis reads metrics only every spec.rollout.analysis.interval
RESYNC_INTERVAL = 60


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: object) -> None:
    """Our own annotations for kopf's bookkeeping, our own Events, and the services handlers call."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # handlers post the Events worth reading themselves
    if threading.current_thread() is not threading.main_thread():
        settings.process.ultimate_exiting_timeout = None  # embedded: never SIGKILL the host process
    config = memo.setdefault("config", load_config())
    kube = memo.setdefault("kube", Kube())
    memo.training = Training(kube, config)
    memo.serving = Serving(kube, config)
    memo.tuning = Tuning(kube, config)


@kopf.on.login()
async def login(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: object
) -> kopf.ConnectionInfo:
    """Log in as kubectl would; our client uses the same credentials as kopf."""
    info = auth.login(memo.get("kubeconfig"), settings, logger)
    memo.setdefault("kube", Kube()).use(info)
    return info


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: object) -> None:
    await memo.kube.close()


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


@kopf.index(*MODEL_DEPLOYMENTS)
def deployments_by_run(namespace: str, name: str, spec: kopf.Spec, **_: object) -> dict | None:
    run = (spec.get("model") or {}).get("trainingRun")
    return {(namespace, run): name} if run else None


@kopf.index(*MODEL_DEPLOYMENTS)
def automatic_deployments(namespace: str, name: str, spec: kopf.Spec, **_: object) -> dict | None:
    """ModelDeployments that pick their own model (a selector or a TuningJob), by namespace."""
    model = spec.get("model") or {}
    return {namespace: name} if model.get("selector") is not None or model.get("tuningJob") else None


@kopf.on.field(*TRAINING_RUNS, field="status.phase", backoff=RETRY_BACKOFF)
async def run_phase_changed(
    body: kopf.Body,
    namespace: str,
    name: str,
    deployments_by_run: kopf.Index,
    automatic_deployments: kopf.Index,
    memo: kopf.Memo,
    **_: object,
) -> None:
    """A run changed phase: its TuningJob hears of its trial; ModelDeployments pinned to it may now serve
    it; those picking their own model may promote it.

    One handler for all three on purpose: kopf runs one handler of a change per cycle, and a handler
    that already succeeded is not run again when the phase moves on before the others ran; so a second
    handler on this field could see Running and never Succeeded."""
    owner = naming.controller_of(dict(body), "TuningJob")
    if owner is not None:
        await memo.tuning.reconcile_named(namespace, owner)
    pinned = deployments_by_run.get((namespace, name), [])
    for deployment in sorted({*pinned, *automatic_deployments.get(namespace, [])}):
        await memo.serving.reconcile(namespace, deployment)


@kopf.on.field(*TUNING_JOBS, field="status.bestTrial", backoff=RETRY_BACKOFF)
async def offer_best_trial(
    namespace: str, automatic_deployments: kopf.Index, memo: kopf.Memo, **_: object
) -> None:
    """A search found a better trial: deployments serving a TuningJob's best may promote it."""
    for deployment in automatic_deployments.get(namespace, []):
        await memo.serving.reconcile(namespace, deployment)


def rollout_in_progress(status: kopf.Status, **_: object) -> bool:
    return bool(status.get("canary") or status.get("candidateModel"))


@kopf.timer(*MODEL_DEPLOYMENTS, interval=ROLLOUT_TICK, when=rollout_in_progress)
async def step_rollout(namespace: str, name: str, memo: kopf.Memo, **_: object) -> None:
    """A canary runs or a candidate awaits approval: analyse, then advance, promote or roll back."""
    await memo.serving.reconcile(namespace, name)


def picks_its_model(spec: kopf.Spec, **_: object) -> bool:
    model = spec.get("model") or {}
    return model.get("selector") is not None or bool(model.get("tuningJob"))


@kopf.timer(*MODEL_DEPLOYMENTS, interval=RESYNC_INTERVAL, when=picks_its_model)
async def resync_candidates(namespace: str, name: str, memo: kopf.Memo, **_: object) -> None:
    """A safety net for missed events: relabelled runs, a TuningJob that changed while we were away."""
    await memo.serving.reconcile(namespace, name)


@kopf.on.resume(*MODEL_DEPLOYMENTS, backoff=RETRY_BACKOFF)
@kopf.on.create(*MODEL_DEPLOYMENTS, backoff=RETRY_BACKOFF)
@kopf.on.update(*MODEL_DEPLOYMENTS, field="spec", backoff=RETRY_BACKOFF)
async def serve_model(namespace: str, name: str, memo: kopf.Memo, **_: object) -> None:
    """Serve the pinned run if it passed its gates; otherwise say why and leave running servers alone."""
    error = await memo.serving.reconcile(namespace, name)
    if error is not None:
        raise kopf.PermanentError(str(error))


@kopf.on.field(
    "apps", "v1", "deployments", field="status", labels=naming.SERVER_SELECTOR, backoff=RETRY_BACKOFF
)
async def report_serving(body: kopf.Body, namespace: str, memo: kopf.Memo, **_: object) -> None:
    """A server Deployment's rollout moved: refresh its ModelDeployment's readiness."""
    owner = naming.controller_of(dict(body), "ModelDeployment")
    if owner is not None:
        await memo.serving.reconcile(namespace, owner)


# TuningJob: a study whose trials are child TrainingRuns (tuning.py). Every handler runs the same
# reconcile step; one TuningJob's steps never overlap.
TUNING_INTERVAL = 5


def is_searching(status: dict, **_: object) -> bool:
    return status.get("phase") not in ("Succeeded", "Failed")


@kopf.on.resume(*TUNING_JOBS, backoff=RETRY_BACKOFF)
@kopf.on.create(*TUNING_JOBS, backoff=RETRY_BACKOFF)
@kopf.on.update(*TUNING_JOBS, field="spec", backoff=RETRY_BACKOFF)
async def start_tuning(body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    """Open the study and start the first trials; an invalid spec is reported (InvalidSpec), not retried."""
    error = await memo.tuning.reconcile(body)
    if error is not None:
        raise kopf.PermanentError(str(error))


@kopf.timer(*TUNING_JOBS, interval=TUNING_INTERVAL, when=is_searching, backoff=RETRY_BACKOFF)
async def advance_tuning(body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    """Catch up with the study and the children: the timeout, and a search resumed after a restart."""
    await memo.tuning.reconcile(body)


@kopf.on.cleanup()
async def stop_study_proxy(memo: kopf.Memo, **_: object) -> None:
    if "tuning" in memo:
        await asyncio.to_thread(memo.tuning.close)
