"""When kopf calls into a TuningJob's reconciler (reconcile.py): a study whose trials are child
TrainingRuns. Every handler runs the same reconcile step; one TuningJob's steps never overlap."""

from __future__ import annotations

import asyncio

import kopf

from crucible.operator.kube.resources import RETRY_BACKOFF, TUNING_JOBS

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
