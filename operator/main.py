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
from crucible.operator.kube.resources import RETRY_BACKOFF, TRAINING_RUNS
from crucible.operator.modeldeployment import handlers as _modeldeployment_handlers  # noqa: F401
from crucible.operator.modeldeployment.reconcile import Serving
from crucible.operator.trainingrun import handlers as _trainingrun_handlers  # noqa: F401
from crucible.operator.trainingrun.reconcile import Training
from crucible.operator.tuningjob import handlers as _tuningjob_handlers  # noqa: F401
from crucible.operator.tuningjob.reconcile import Tuning


@kopf.on.startup()
async def configure(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    running_runs: kopf.Index,
    waiting_runs: kopf.Index,
    **_: object,
) -> None:
    """Our own annotations for kopf's bookkeeping, our own Events, the services handlers call, and the
    reader of running trainers' logs (status.progress), which follows the live index of running runs."""
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
    memo.progress_reader = asyncio.create_task(memo.training.follow_progress(running_runs))
    memo.waiting_reader = asyncio.create_task(memo.training.follow_waiting(waiting_runs))


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
    for reader in ("progress_reader", "waiting_reader"):
        if reader in memo:
            memo[reader].cancel()
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
    pinned = deployments_by_run.get((namespace, name), [])
    for deployment in sorted({*pinned, *automatic_deployments.get(namespace, [])}):
        await memo.serving.reconcile(namespace, deployment)
