"""TuningJob -> an Optuna study and its trials as child TrainingRuns.

One reconcile step, run by the TuningJob's handlers, its periodic step, and every phase change of a child:
tell the study how finished trials ended, create the children of trials asked for but not created
yet, ask new trials while the budget allows, and write the status. Every fact lives in the study or
in the children's deterministic names, and a trial is recorded in the study (asked) before its child
is created, so a restarted operator resumes without duplicating or losing a trial. Steps of one
TuningJob never overlap (a lock per TuningJob): two at once could both see a free slot.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import kopf
import optuna
from pydantic import ValidationError

from crucible.api.manifest import InvalidSpec, parse_spec
from crucible.api.tuningjob import TuningJobSpec
from crucible.operator.config import OperatorConfig
from crucible.operator.kube import naming
from crucible.operator.kube.client import Kube, Ref
from crucible.operator.kube.conditions import find
from crucible.operator.kube.ownership import controller_uid, uid
from crucible.operator.tuningjob.manifests import trial_run
from crucible.operator.tuningjob.plan import plan_step, verdict
from crucible.operator.tuningjob.status import (
    FINAL_PHASES,
    PRUNING_AVAILABLE,
    STUDY_UNREACHABLE,
    invalid_status,
    pruning_condition,
    search_status,
)
from crucible.operator.tuningjob.study_store import StudyStore
from crucible.tuning.budget import TrialTally
from crucible.tuning.outcome import TrialOutcome, crashed_outcome, tell
from crucible.tuning.space import apply_params, distributions
from crucible.tuning.study import StudyMismatch, open_study, resume_trial
from crucible.tuning.summary import TRAINING_RUN_ATTR, trial_run_name

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per reconcile step


def study_name(job: dict) -> str:
    """`<namespace>.<name>.<uid>`: a TuningJob deleted and created again searches in a new study."""
    metadata = job["metadata"]
    return f"{metadata['namespace']}.{metadata['name']}.{metadata['uid']}"


def elapsed_seconds(job: dict) -> float:
    """Since the TuningJob was created: timeoutSeconds counts the time the operator was down too."""
    created = datetime.fromisoformat(job["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    return (datetime.now(UTC) - created).total_seconds()


def check_spec(job: dict) -> TuningJobSpec:
    """The spec, or InvalidSpec naming the field (what the CRD's CEL rules could not check)."""
    spec: TuningJobSpec = parse_spec("TuningJob", job.get("spec"))  # type: ignore[assignment]
    if spec.storage.volume_claim or spec.storage.url_secret_ref:
        raise InvalidSpec(
            "spec.storage",
            "on a cluster every study lives in the operator's study storage (tuning.study in the "
            "operator configuration); volumeClaim and urlSecretRef apply to no TuningJob here",
        )
    return spec


class Tuning:
    def __init__(self, kube: Kube, config: OperatorConfig) -> None:
        self.kube = kube
        self.config = config
        self.store = StudyStore(config.tuning)
        self._locks: dict[str, asyncio.Lock] = {}

    def close(self) -> None:
        self.store.close()

    async def reconcile_named(self, namespace: str, name: str) -> InvalidSpec | None:
        job = await self.kube.get(Ref(naming.API_VERSION_STRING, "TuningJob", namespace, name))
        return None if job is None else await self.reconcile(job)

    async def reconcile(self, body: dict) -> InvalidSpec | None:
        """One step (see the module's doc); returns the error of an invalid spec, reported in status."""
        job_uid = uid(body) or ""
        async with self._locks.setdefault(job_uid, asyncio.Lock()):
            job = await self.kube.get(Ref.of(dict(body)))  # fresh: the last step changed its status
            if job is None or uid(job) != job_uid:
                return None
            try:
                spec = check_spec(job)
                study = await asyncio.to_thread(self._open, spec, study_name(job))
            except InvalidSpec as error:
                await self._reject(job, error)
                return error
            await self._step(job, spec, study)
            return None

    def _open(self, spec: TuningJobSpec, name: str) -> optuna.Study:
        try:
            return open_study(spec, self.store.storage(), name)
        except StudyMismatch as error:
            raise InvalidSpec("spec", str(error)) from None

    async def _step(self, job: dict, spec: TuningJobSpec, study: optuna.Study) -> None:
        children = await self._children(job)
        trials = await asyncio.to_thread(study.get_trials, deepcopy=False)
        elapsed = elapsed_seconds(job)
        step = plan_step(
            trials, {n: child.get("status") or {} for n, child in children.items()}, spec, elapsed
        )
        for number, outcome in step.tell.items():
            await asyncio.to_thread(_tell, study, number, outcome)
        by_number = {trial.number: trial for trial in trials}
        name = job["metadata"]["name"]
        for number in step.create:  # asked by an operator that stopped before creating the child
            if TRAINING_RUN_ATTR not in by_number[number].user_attrs:
                await asyncio.to_thread(_name_run, study, name, number)
            await self._create_trial(job, spec, study, number, dict(by_number[number].params))
        for _ in range(step.ask):
            number, params = await asyncio.to_thread(_ask, study, spec, name)
            await self._create_trial(job, spec, study, number, params)
        statuses = [(children[number].get("status") or {}) for number in sorted(children)]
        await self._write_status(job, spec, study, elapsed, statuses)

    async def _children(self, job: dict) -> dict[int, dict]:
        """This TuningJob's TrainingRuns by trial number (not those of an earlier one of the same name)."""
        metadata = job["metadata"]
        ref = Ref(naming.API_VERSION_STRING, "TrainingRun", metadata["namespace"])
        runs = await self.kube.list(ref, {naming.TUNING_JOB: naming.label_value(metadata["name"])})
        children = {}
        for run in runs:
            number = (run["metadata"].get("labels") or {}).get(naming.TRIAL_NUMBER, "")
            if controller_uid(run) == uid(job) and number.isdigit():
                children[int(number)] = run
        return children

    async def _create_trial(
        self, job: dict, spec: TuningJobSpec, study: optuna.Study, number: int, params: dict[str, Any]
    ) -> None:
        metadata = job["metadata"]
        try:
            run_spec = apply_params(spec.template, params)
        except ValidationError as error:  # the spec checks every value a sampler can produce; be safe
            await asyncio.to_thread(_tell, study, number, crashed_outcome(error))
            return
        child = trial_run(metadata["name"], metadata["namespace"], study.study_name, number, run_spec)
        kopf.adopt(child, owner=job)
        existing, created = await self.kube.create(child)
        if controller_uid(existing) != uid(job):
            # An earlier TuningJob of this name left it; garbage collection removes it, then we retry.
            logger.warning(
                "%s belongs to an earlier TuningJob; waiting for it to go", child["metadata"]["name"]
            )
            return
        if created:
            kopf.event(job, type="Normal", reason="TrialStarted", message=_started(number, params))

    async def _write_status(
        self, job: dict, spec: TuningJobSpec, study: optuna.Study, elapsed: float, trial_statuses: list[dict]
    ) -> None:
        trials = await asyncio.to_thread(study.get_trials, deepcopy=False)
        standing = verdict(TrialTally.of(t.state for t in trials), spec, elapsed)
        previous = job.get("status") or {}
        generation = job["metadata"].get("generation")
        pruning = pruning_condition(trial_statuses, self.config.tuning.proxy_url(), generation)
        status = search_status(study.study_name, trials, spec, standing, generation, previous, pruning)
        await self._patch(job, status.to_patch())
        was = find(previous.get("conditions"), PRUNING_AVAILABLE) or {}
        if (
            pruning is not None
            and pruning.reason == STUDY_UNREACHABLE
            and was.get("reason") != STUDY_UNREACHABLE
        ):
            kopf.event(job, type="Warning", reason=STUDY_UNREACHABLE, message=pruning.message)
        if standing.phase in FINAL_PHASES and previous.get("phase") not in FINAL_PHASES:
            best = status.best_trial
            found = f"; best trial {best.number}: {best.value:.4g} ({best.training_run})" if best else ""
            kind = "Normal" if standing.phase == "Succeeded" else "Warning"
            kopf.event(job, type=kind, reason=f"Search{standing.phase}", message=standing.reason + found)

    async def _reject(self, job: dict, error: InvalidSpec) -> None:
        previous = job.get("status") or {}
        status = invalid_status(error, job["metadata"].get("generation"), previous)
        if previous.get("reason") != status.reason:
            kopf.event(job, type="Warning", reason="InvalidSpec", message=str(error))
        await self._patch(job, status.to_patch())

    async def _patch(self, job: dict, patch: dict) -> None:
        previous = job.get("status") or {}
        if any(previous.get(key) != value for key, value in patch.items()):
            await self.kube.patch_status(Ref.of(job), patch)


def _ask(study: optuna.Study, spec: TuningJobSpec, job: str) -> tuple[int, dict[str, Any]]:
    """A new trial, recorded in the study (with its TrainingRun's name) before the child exists."""
    trial = study.ask(fixed_distributions=distributions(spec))
    _name_run(study, job, trial.number)
    return trial.number, dict(trial.params)


def _name_run(study: optuna.Study, job: str, number: int) -> None:
    resume_trial(study, number).set_user_attr(TRAINING_RUN_ATTR, trial_run_name(job, number))


def _tell(study: optuna.Study, number: int, outcome: TrialOutcome) -> None:
    tell(study, resume_trial(study, number), outcome)


def _started(number: int, params: dict[str, Any]) -> str:
    shown = ", ".join(
        f"{path.rsplit('.', 1)[-1]} {value:.4g}"
        if isinstance(value, float)
        else f"{path.rsplit('.', 1)[-1]} {value}"
        for path, value in params.items()
    )
    return f"trial {number}: {shown}"
