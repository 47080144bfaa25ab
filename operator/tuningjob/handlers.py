"""When kopf calls into a TuningJob's reconciler (reconcile.py): a study whose trials are child
TrainingRuns. Every handler runs the same reconcile step; one TuningJob's steps never overlap. (main.py
closes the study proxy at shutdown, once the periodic steps stopped.)"""

from __future__ import annotations

import kopf

from crucible.operator.kube.periodic import indexed
from crucible.operator.kube.resources import RETRY_BACKOFF, TUNING_JOBS

TUNING_INTERVAL = 5


@kopf.index(*TUNING_JOBS)
def searching_jobs(namespace: str, name: str, status: kopf.Status, **_: object) -> dict | None:
    """TuningJobs still searching: main.py steps these every TUNING_INTERVAL seconds to catch up with the
    study and the children (the timeout, a search resumed after a restart). An index and the operator's
    own loop, not a kopf timer: a timer would put kopf's finalizer on the TuningJob (kube/periodic.py)."""
    return indexed(namespace, name) if status.get("phase") not in ("Succeeded", "Failed") else None


@kopf.on.resume(*TUNING_JOBS, backoff=RETRY_BACKOFF)
@kopf.on.create(*TUNING_JOBS, backoff=RETRY_BACKOFF)
@kopf.on.update(*TUNING_JOBS, field="spec", backoff=RETRY_BACKOFF)
async def start_tuning(body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    """Open the study and start the first trials; an invalid spec is reported (InvalidSpec), not retried."""
    error = await memo.tuning.reconcile(body)
    if error is not None:
        raise kopf.PermanentError(str(error))
