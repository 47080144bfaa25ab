"""When kopf calls into a ModelDeployment's reconciler (reconcile.py): the decorators say when, the bodies
say what. The indexes let a TrainingRun's phase change find the deployments that care (main.py)."""

from __future__ import annotations

import kopf

from crucible.operator.kube import naming
from crucible.operator.kube.ownership import controller_of
from crucible.operator.kube.periodic import indexed
from crucible.operator.kube.resources import MODEL_DEPLOYMENTS, RETRY_BACKOFF, TUNING_JOBS

ROLLOUT_TICK = 2  # seconds; analysis reads metrics only every spec.rollout.analysis.interval
RESYNC_INTERVAL = 60


@kopf.index(*MODEL_DEPLOYMENTS)
def deployments_by_run(namespace: str, name: str, spec: kopf.Spec, **_: object) -> dict | None:
    run = (spec.get("model") or {}).get("trainingRun")
    return {(namespace, run): name} if run else None


@kopf.index(*MODEL_DEPLOYMENTS)
def automatic_deployments(namespace: str, name: str, spec: kopf.Spec, **_: object) -> dict | None:
    """ModelDeployments that pick their own model (a selector or a TuningJob), by namespace."""
    model = spec.get("model") or {}
    return {namespace: name} if model.get("selector") is not None or model.get("tuningJob") else None


@kopf.on.field(*TUNING_JOBS, field="status.bestTrial", backoff=RETRY_BACKOFF)
async def offer_best_trial(
    namespace: str, automatic_deployments: kopf.Index, memo: kopf.Memo, **_: object
) -> None:
    """A search found a better trial: deployments serving a TuningJob's best may promote it."""
    for deployment in automatic_deployments.get(namespace, []):
        await memo.serving.reconcile(namespace, deployment)


@kopf.index(*MODEL_DEPLOYMENTS)
def deployments_rolling_out(namespace: str, name: str, status: kopf.Status, **_: object) -> dict | None:
    """A canary runs or a candidate awaits approval: main.py steps these every ROLLOUT_TICK seconds
    (analyse, then advance, promote or roll back). An index and the operator's own loop, not a kopf
    timer: a timer would put kopf's finalizer on the ModelDeployment (kube/periodic.py)."""
    rolling = status.get("canary") or status.get("candidateModel")
    return indexed(namespace, name) if rolling else None


@kopf.index(*MODEL_DEPLOYMENTS)
def deployments_picking(namespace: str, name: str, spec: kopf.Spec, **_: object) -> dict | None:
    """ModelDeployments that pick their own model: main.py reconciles these every RESYNC_INTERVAL
    seconds, a safety net for missed events (relabelled runs, a TuningJob that changed while the
    operator was away)."""
    model = spec.get("model") or {}
    picks = model.get("selector") is not None or bool(model.get("tuningJob"))
    return indexed(namespace, name) if picks else None


@kopf.on.resume(*MODEL_DEPLOYMENTS, backoff=RETRY_BACKOFF)
@kopf.on.create(*MODEL_DEPLOYMENTS, backoff=RETRY_BACKOFF)
@kopf.on.update(*MODEL_DEPLOYMENTS, field="spec", backoff=RETRY_BACKOFF)
async def serve_model(namespace: str, name: str, memo: kopf.Memo, **_: object) -> None:
    """Serve the pinned run if it passed its gates; otherwise say why and leave running servers alone."""
    error = await memo.serving.reconcile(namespace, name)
    if error is not None:
        raise kopf.PermanentError(str(error))


@kopf.on.event("apps", "v1", "deployments", labels=naming.SERVER_SELECTOR)
async def report_serving(body: kopf.Body, namespace: str, memo: kopf.Memo, **_: object) -> None:
    """A server Deployment changed (its rollout moved, or it is gone): refresh its ModelDeployment's
    readiness. An event handler on purpose: a change handler (on.field) keeps kopf's diff base in an
    annotation of the Deployment, and on a Deployment an annotation change moves metadata.generation,
    so the Deployment controller never reports having caught up and the status change that follows
    fires the handler again. The operator writes only the spec it owns onto a server Deployment; a
    failed refresh is made good by the next event, the rollout tick or the resync."""
    owner = controller_of(dict(body), "ModelDeployment")
    if owner is not None:
        await memo.serving.reconcile(namespace, owner)
