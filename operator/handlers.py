"""The operator's kopf entry points: each decorator says when, each body says what (in training.py
and serving.py). Importing this module registers the handlers; `crucible operator` runs them."""

from __future__ import annotations

import logging
import threading

import kopf

from crucible import API_GROUP, API_VERSION
from crucible.operator import auth, naming
from crucible.operator.client import Kube
from crucible.operator.config import load_config
from crucible.operator.serving import Serving
from crucible.operator.training import Training, has_not_finished

TRAINING_RUNS = (API_GROUP, API_VERSION, "trainingruns")
MODEL_DEPLOYMENTS = (API_GROUP, API_VERSION, "modeldeployments")
RETRY_BACKOFF = 10


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


@kopf.index(*MODEL_DEPLOYMENTS)
def deployments_by_run(namespace: str, name: str, spec: kopf.Spec, **_: object) -> dict | None:
    run = (spec.get("model") or {}).get("trainingRun")
    return {(namespace, run): name} if run else None


@kopf.on.field(*TRAINING_RUNS, field="status.phase", backoff=RETRY_BACKOFF)
async def serve_changed_run(
    namespace: str, name: str, deployments_by_run: kopf.Index, memo: kopf.Memo, **_: object
) -> None:
    """A run changed phase: the ModelDeployments pinned to it may now serve it."""
    for deployment in deployments_by_run.get((namespace, name), []):
        await memo.serving.reconcile(namespace, deployment)


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
