"""The operator's start: configuration, login, cleanup, and the one handler that spans kinds.

Importing this module registers every handler: each kind's own live in `<kind>/handlers.py` and reach
their reconciler through the memo (`memo.training`, `memo.tuning`, `memo.serving`, made at startup).
`run_phase_changed` is here because a TrainingRun's phase change fans out to two other kinds: its
TuningJob (a trial finished) and the ModelDeployments that serve or may promote it. `crucible
operator` (command.py) runs all of it.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import kopf

from crucible import API_GROUP
from crucible.operator.config import load_config
from crucible.operator.kube import auth
from crucible.operator.kube.client import Kube
from crucible.operator.kube.ownership import controller_of
from crucible.operator.kube.periodic import Periodic
from crucible.operator.kube.resources import RETRY_BACKOFF, TRAINING_RUNS
from crucible.operator.modeldeployment import handlers as _modeldeployment_handlers  # noqa: F401
from crucible.operator.modeldeployment.handlers import RESYNC_INTERVAL, ROLLOUT_TICK
from crucible.operator.modeldeployment.reconcile import Serving
from crucible.operator.modeldeployment.retraining import handlers as _retraining_handlers  # noqa: F401
from crucible.operator.modeldeployment.retraining.reconcile import Retraining
from crucible.operator.trainingrun import handlers as _trainingrun_handlers  # noqa: F401
from crucible.operator.trainingrun.reconcile import Training
from crucible.operator.tuningjob import handlers as _tuningjob_handlers  # noqa: F401
from crucible.operator.tuningjob.handlers import TUNING_INTERVAL
from crucible.operator.tuningjob.reconcile import Tuning

# Never added by this operator (no timers, daemons or deletion handlers: deleting never waits on it). Named
# so that kopf removes the one an older operator's timers left on an object as soon as it sees the object.
KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    running_runs: kopf.Index,
    deployments_rolling_out: kopf.Index,
    deployments_picking: kopf.Index,
    searching_jobs: kopf.Index,
    retraining_policies: kopf.Index,
    waiting_runs: kopf.Index,
    **_: object,
) -> None:
    """Our own annotations for kopf's bookkeeping, our own Events, the services handlers call, and the
    operator's periodic loops over the live indexes (kube/periodic.py): running trainers' logs into
    status.progress, runs waiting with a reason (a claim, an image), canary ticks, model picking's
    resync, searching TuningJobs, and the retraining policies of ModelDeployments."""
    settings.persistence.finalizer = KOPF_FINALIZER
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
    memo.retraining = Retraining(kube, config)
    progress_interval = config.training.progress_interval_seconds
    retraining_interval = config.retraining.interval_seconds
    memo.loops = [
        Periodic(what, interval, keys, step, backoff=RETRY_BACKOFF).start()
        for what, interval, keys, step in (
            ("progress", progress_interval, running_runs, memo.training.refresh_progress),
            ("waiting run", progress_interval, waiting_runs, memo.training.recheck),
            ("rollout tick", ROLLOUT_TICK, deployments_rolling_out, memo.serving.reconcile),
            ("model resync", RESYNC_INTERVAL, deployments_picking, memo.serving.reconcile),
            ("tuning step", TUNING_INTERVAL, searching_jobs, memo.tuning.reconcile_named),
            ("retraining", retraining_interval, retraining_policies, memo.retraining.evaluate),
        )
    ]


@kopf.on.login()
async def login(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: object
) -> kopf.ConnectionInfo:
    """Log in as kubectl would; our client uses the same credentials as kopf, and logs in again the same
    way when the API answers it 401 (a rotated ServiceAccount token)."""
    kubeconfig = memo.get("kubeconfig")
    info = auth.login(kubeconfig, settings, logger)
    kube = memo.setdefault("kube", Kube())
    kube.use(info)
    kube.relogin_with(lambda: auth.login(kubeconfig, settings, logger))
    return info


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: object) -> None:
    """The periodic loops stop first (a step under way is cancelled), then what their steps use."""
    loops = memo.get("loops", [])
    for loop in loops:
        loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    if "tuning" in memo:
        await asyncio.to_thread(memo.tuning.close)
    await memo.kube.close()


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
    owner = controller_of(dict(body), "TuningJob")
    if owner is not None:
        await memo.tuning.reconcile_named(namespace, owner)
    await _reconcile_deployments_of_run(namespace, name, deployments_by_run, automatic_deployments, memo)


@kopf.on.event(*TRAINING_RUNS)
async def run_deleted(
    event: kopf.RawEvent,
    namespace: str,
    name: str,
    deployments_by_run: kopf.Index,
    automatic_deployments: kopf.Index,
    memo: kopf.Memo,
    **_: object,
) -> None:
    """A run was deleted: a ModelDeployment serving it says so (ModelAvailable False, an Event) and keeps
    its servers; one that picks its own model picks the next best run. (No finalizer waits for this.)"""
    if event.get("type") != "DELETED":
        return
    await _reconcile_deployments_of_run(namespace, name, deployments_by_run, automatic_deployments, memo)


async def _reconcile_deployments_of_run(
    namespace: str,
    name: str,
    deployments_by_run: kopf.Index,
    automatic_deployments: kopf.Index,
    memo: kopf.Memo,
) -> None:
    """Reconcile every ModelDeployment a change of this run may concern: those pinned to it, and those
    of its namespace that pick their own model."""
    pinned = deployments_by_run.get((namespace, name), [])
    for deployment in sorted({*pinned, *automatic_deployments.get(namespace, [])}):
        await memo.serving.reconcile(namespace, deployment)
