"""TrainingRun -> trainer Job, and the Job's progress and result back into the run's status.

Two writers would race on the run's status, so there is one: the Job's handler (kopf handles one
object's events in order). The run's own handler only makes sure the children exist, except for an
invalid spec, where no Job exists to report anything.
"""

from __future__ import annotations

import logging

import kopf

from crucible.api.manifest import InvalidSpec
from crucible.api.status import TrainingRunStatus
from crucible.operator.config import OperatorConfig
from crucible.operator.kube import naming
from crucible.operator.kube.client import ApiError, Kube, Ref
from crucible.operator.kube.ownership import controller_of, controller_uid, uid, unchanged
from crucible.operator.trainingrun.claims import claim_problem, claims_of, scheduled
from crucible.operator.trainingrun.manifests import CONTAINER, training_children
from crucible.operator.trainingrun.plan import plan_training
from crucible.operator.trainingrun.status import (
    finished_status,
    in_progress_status,
    invalid_status,
    job_phase,
    lost_status,
    progress_text,
    termination_of,
)

FINAL_PHASES = ("Succeeded", "Failed")
RECREATED_DELAY = 10
LOG_TAIL_LINES = 200  # the last stage line may lie a few notes and many epoch lines back
logger = logging.getLogger(__name__)


def has_not_finished(status: dict, **_: object) -> bool:
    """A run still to start or to watch (a run that failed validation has no Job and may be fixed)."""
    return status.get("phase") not in FINAL_PHASES or not status.get("jobName")


class Training:
    def __init__(self, kube: Kube, config: OperatorConfig) -> None:
        self.kube = kube
        self.config = config

    async def start(self, body: kopf.Body, patch: kopf.Patch) -> None:
        """Make sure the run's ConfigMap and Job exist; the Job's handler takes it from there."""
        status = dict(body.get("status") or {})
        if status.get("jobName") and status.get("phase") not in FINAL_PHASES:
            job = Ref("batch/v1", "Job", body.metadata["namespace"], status["jobName"])
            if await self.kube.get(job) is None:
                self._lose(body, patch, status["jobName"])
                return
        try:
            plan = plan_training(dict(body), self.config)
        except InvalidSpec as error:
            self._reject(body, patch, error)
            return
        children = training_children(plan, self.config.training)
        kopf.adopt(children, owner=body)
        config_map, job = [await self._ensure(child, body) for child in children]
        if config_map["data"] != children[0]["data"]:
            message = "the spec changed after the run started and is ignored; create a new TrainingRun"
            kopf.event(body, type="Warning", reason="SpecChangeIgnored", message=message)
        if not status.get("jobName"):
            kopf.event(
                body, type="Normal", reason="JobCreated", message=f"trainer Job {job['metadata']['name']}"
            )

    @staticmethod
    def _reject(body: kopf.Body, patch: kopf.Patch, error: InvalidSpec) -> None:
        """Before the Job exists: Failed, naming the field, no retries. After: the run goes on."""
        status = body.get("status") or {}
        if status.get("jobName"):
            message = f"the run has started; {error}"
            kopf.event(body, type="Warning", reason="SpecChangeIgnored", message=message)
            return
        invalid = invalid_status(error, body.metadata.get("generation"), status.get("conditions"))
        patch.status.update(invalid.to_patch())
        kopf.event(body, type="Warning", reason="InvalidSpec", message=str(error))
        raise kopf.PermanentError(str(error))

    @staticmethod
    def _lose(run: dict, patch: kopf.Patch | None, job_name: str) -> dict:
        """The run's Job is gone without a recorded result: the status patch that says so."""
        status = run.get("status") or {}
        lost = lost_status(job_name, run["metadata"].get("generation"), status.get("conditions")).to_patch()
        if patch is not None:
            patch.status.update(lost)
        kopf.event(run, type="Warning", reason="JobLost", message=lost["reason"])
        return lost

    async def lost(self, job: kopf.Body) -> None:
        """A trainer Job was deleted: its run fails unless its result was already recorded (or the run
        itself is being deleted, which takes its Job with it)."""
        ref, run = await self._run_of(job)
        if ref is None or run is None or (run.get("status") or {}).get("phase") in FINAL_PHASES:
            return
        if not run["metadata"].get("deletionTimestamp"):
            await self.kube.patch_status(ref, self._lose(run, None, job.metadata["name"]))

    async def _run_of(self, job: kopf.Body | dict) -> tuple[Ref | None, dict | None]:
        """The TrainingRun that owns this Job, if it still exists (not a later one of the same name)."""
        run_name = controller_of(dict(job), "TrainingRun")
        if run_name is None:
            return None, None
        ref = Ref(naming.API_VERSION_STRING, "TrainingRun", job["metadata"]["namespace"], run_name)
        run = await self.kube.get(ref)
        if run is None or uid(run) != controller_uid(dict(job)):
            return ref, None  # the run is gone; its Job goes with it
        return ref, run

    async def _ensure(self, child: dict, owner: kopf.Body) -> dict:
        existing, _ = await self.kube.create(child)
        if controller_uid(existing) != uid(owner):
            # Left by a deleted run of the same name, and about to be garbage-collected.
            raise kopf.TemporaryError(
                f"{child['kind']} {child['metadata']['name']} belongs to an earlier TrainingRun of this name",
                delay=RECREATED_DELAY,
            )
        return existing

    async def report(self, job: kopf.Body | dict) -> None:
        """Mirror the Job into its run's status: Pending/Running, then the trainer's result."""
        ref, run = await self._run_of(job)
        if ref is None or run is None:
            return
        previous = run.get("status") or {}
        status = await self._status_for(dict(job), run, previous)
        if status is None:
            return
        patch = status.to_patch()
        if not unchanged(previous, patch):
            await self.kube.patch_status(ref, patch)
            if status.phase == "Succeeded":
                kopf.event(run, type="Normal", reason="Succeeded", message=_summary(patch))
            elif status.phase == "Failed":
                kopf.event(run, type="Warning", reason="Failed", message=status.reason or "")

    async def _status_for(self, job: dict, run: dict, previous: dict) -> TrainingRunStatus | None:
        generation = run["metadata"].get("generation")
        if job_phase(job) not in FINAL_PHASES and previous.get("phase") in FINAL_PHASES:
            return None  # an old event of a Job already reported as ended
        pods = await self.kube.list(
            Ref("v1", "Pod", job["metadata"]["namespace"]), {"job-name": job["metadata"]["name"]}
        )
        own_pods = [pod for pod in pods if controller_uid(pod) == uid(job)]
        if job_phase(job) not in FINAL_PHASES:
            claim = None if scheduled(own_pods) else await self._claim_problem(job)
            return in_progress_status(
                job,
                generation,
                previous.get("conditions"),
                own_pods,
                previous.get("progress"),
                was_running=previous.get("phase") == "Running",
                claim=claim,
            )
        return finished_status(
            job, termination_of(own_pods, CONTAINER), generation, previous.get("conditions")
        )

    async def _claim_problem(self, job: dict) -> tuple[str, str] | None:
        """A claim the Job's pod mounts that is missing or not bound yet (read only while no pod of the
        Job is scheduled: the scheduler places none before its claims are bound). The Events about a
        Pending claim say why (no provisioner, a class that cannot give the access mode); when they
        cannot be read, the claim's own fields still say which class and mode it asks for; when the
        claims cannot be read (RBAC without `get` on claims), the pod's own waiting reason is all."""
        namespace = job["metadata"]["namespace"]
        claims: dict[str, dict | None] = {}
        events: dict[str, list[dict]] = {}
        for name in claims_of(job):
            try:
                claim = await self.kube.get(Ref("v1", "PersistentVolumeClaim", namespace, name))
            except ApiError as error:
                logger.debug("cannot read claim %s/%s: %s", namespace, name, error)
                continue
            claims[name] = claim
            if claim is None or (claim.get("status") or {}).get("phase", "Pending") != "Pending":
                continue
            about = {"involvedObject.kind": "PersistentVolumeClaim", "involvedObject.name": name}
            try:
                events[name] = await self.kube.list(Ref("v1", "Event", namespace), {}, about)
            except ApiError as error:
                logger.debug("no Events for claim %s/%s: %s", namespace, name, error)
        return claim_problem(job, claims, events)

    async def recheck(self, namespace: str, name: str) -> None:
        """Look again at a run whose pod waits with a reason (main.py calls this every
        progressIntervalSeconds for each run of the `waiting_runs` index): what it waits for (a claim
        being created or bound, an image pull retried) changes no field of its Job, so no Job event
        would tell."""
        run = await self.kube.get(Ref(naming.API_VERSION_STRING, "TrainingRun", namespace, name))
        status = (run or {}).get("status") or {}
        if run is None or status.get("phase") != "Pending" or not status.get("jobName"):
            return
        job = await self.kube.get(Ref("batch/v1", "Job", namespace, status["jobName"]))
        if job is not None:
            await self.report(job)

    async def refresh_progress(self, namespace: str, name: str) -> None:
        """Read a running run's trainer log into its status.progress (main.py calls this every
        progressIntervalSeconds for each run of the `running_runs` index). The result itself still
        comes only from the termination message; this is for people."""
        ref = Ref(naming.API_VERSION_STRING, "TrainingRun", namespace, name)
        run = await self.kube.get(ref)
        status = (run or {}).get("status") or {}
        if run is None or status.get("phase") != "Running" or not status.get("jobName"):
            return
        pods = await self.kube.list(Ref("v1", "Pod", namespace), {"job-name": status["jobName"]})
        started = [pod for pod in pods if (pod.get("status") or {}).get("phase") == "Running"]
        if not started:
            return
        pod = max(started, key=lambda item: item["metadata"].get("creationTimestamp") or "")
        log = await self.kube.log(
            Ref.of({**pod, "apiVersion": "v1", "kind": "Pod"}), CONTAINER, LOG_TAIL_LINES
        )
        text = progress_text(log or "")
        if text is None or text == status.get("progress"):
            return
        # Only onto the version of the run that was read: the run may have finished while its log was
        # read, and a progress line must not land on its final status (409: it changed; next round).
        version = {"resourceVersion": run["metadata"]["resourceVersion"]}
        try:
            await self.kube.patch(ref, {"metadata": version, "status": {"progress": text}}, "status")
        except ApiError as error:
            if error.status != 409:
                raise


def _summary(status: dict) -> str:
    metrics = status.get("metrics") or {}
    shown = ", ".join(f"{key} {metrics[key]:.4f}" for key in ("accuracy", "cvMean") if key in metrics)
    artifact = (status.get("artifact") or {}).get("uri", "")
    return f"{shown}; artifact {artifact}".strip("; ")
