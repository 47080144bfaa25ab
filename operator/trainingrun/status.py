"""A trainer Job, and the termination message of its pod, read back into a TrainingRun status (pure)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError

from crucible.api.manifest import InvalidSpec
from crucible.api.progress import progress_of
from crucible.api.result import GATE_ORDER, TrainResult, parse_result
from crucible.api.status import (
    ArtifactStatus,
    EvaluationSummary,
    GateStatus,
    HeldOutOutcomes,
    PruningStatus,
    StatusModel,
    TrainingPhase,
    TrainingRunStatus,
)
from crucible.operator.kube.conditions import carried_over, condition

READY, GATES_PASSED = "Ready", "GatesPassed"
GATE_TITLES = {"debug": "Debug", "crossValidation": "CrossValidation", "overfitting": "Overfitting"}


@dataclass(frozen=True)
class Termination:
    """How the trainer container ended, as its pod reports it."""

    exit_code: int | None
    reason: str
    message: str
    finished_at: str


def job_phase(job: dict) -> TrainingPhase:
    status = job.get("status") or {}
    for item in status.get("conditions") or []:
        if item.get("status") == "True" and item.get("type") == "Complete":
            return "Succeeded"
        if item.get("status") == "True" and item.get("type") == "Failed":
            return "Failed"
    # `active` counts pods that have not started (unschedulable, pulling their image) too; `ready`
    # counts those whose container runs (the trainer has no readiness probe). A pod that has finished
    # but whose Job is not marked Complete or Failed yet (the controller waits for it to terminate)
    # is no longer ready: the run is still Running then, not Pending again.
    finishing = status.get("succeeded") or status.get("failed") or status.get("terminating")
    return "Running" if status.get("ready") or finishing else "Pending"


def waiting_reason(pods: list[dict]) -> tuple[str, str] | None:
    """Why the Job's pod does not run yet, as its status says: a container waiting (ErrImagePull,
    ImagePullBackOff, CreateContainerConfigError...) or the pod not scheduled (Unschedulable, with the
    scheduler's message: no node of the pool, a claim that does not exist)."""
    for pod in pods:
        status = pod.get("status") or {}
        for item in status.get("containerStatuses") or []:
            waiting = (item.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] != "ContainerCreating":
                return waiting["reason"], waiting.get("message") or ""
        for item in status.get("conditions") or []:
            if item.get("type") == "PodScheduled" and item.get("status") == "False":
                return item.get("reason") or "Unschedulable", item.get("message") or ""
    return None


def _failed_condition(job: dict) -> dict:
    conditions = (job.get("status") or {}).get("conditions") or []
    return next((item for item in conditions if item.get("type") == "Failed"), {})


def termination_of(pods: list[dict], container: str) -> Termination | None:
    """The latest termination of `container` among the Job's pods (a retried Job has several)."""
    found = []
    for pod in pods:
        for item in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (item.get("state") or {}).get("terminated")
            if item.get("name") == container and terminated:
                found.append(
                    Termination(
                        exit_code=terminated.get("exitCode"),
                        reason=terminated.get("reason") or "",
                        message=terminated.get("message") or "",
                        finished_at=terminated.get("finishedAt") or "",
                    )
                )
    return max(found, key=lambda item: item.finished_at) if found else None


OUT_OF_MEMORY = "OutOfMemory"


def _memory_limit(job: dict) -> str | None:
    """The trainer container's memory limit, as the Job gave it (spec.resources.memory of the run)."""
    containers = ((((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []
    for container in containers:
        limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        if limit:
            return str(limit)
    return None


def out_of_memory(job: dict) -> str:
    """The reason of a trainer killed for memory: the limit it hit and what to change. Kubernetes reports
    no peak for a killed container, so none is named; the Job is not retried (the same limit would be
    hit again)."""
    limit = _memory_limit(job)
    within = f" of {limit}" if limit else ""
    return (
        f"{OUT_OF_MEMORY}: the trainer was killed for exceeding its memory limit{within} (OOMKilled); "
        "raise spec.resources.memory, or lower spec.hyperparameters.batchSize or spec.dataset.imageSize"
    )


def _explain(job: dict, termination: Termination | None) -> str:
    """Why a Job ended without a result a person can act on, in one sentence."""
    failed = _failed_condition(job)
    if failed.get("reason") == "DeadlineExceeded":
        limit = (job.get("spec") or {}).get("activeDeadlineSeconds")
        return f"the run took longer than its deadline ({limit} s) and was stopped"
    if termination is None:
        detail = failed.get("message") or failed.get("reason") or "no pod reported how it ended"
        return f"the trainer Job failed: {detail}"
    if termination.reason == "OOMKilled":
        return out_of_memory(job)
    last_line = termination.message.strip().splitlines()[-1:] or [""]
    detail = f": {last_line[0][:300]}" if last_line[0] else ""
    return f"the trainer exited with code {termination.exit_code} ({termination.reason or 'Error'}){detail}"


def _parse(message: str) -> TrainResult:
    try:
        return parse_result(message)
    except ValidationError:
        # The trainer writes a metric that was NaN as null, which TrainResult itself refuses:
        # keep the verdict and the other metrics rather than lose the whole result.
        document = json.loads(message)
        metrics = document.get("metrics") or {}
        document["metrics"] = {key: value for key, value in metrics.items() if value is not None}
        return TrainResult.model_validate(document)


def read_result(job: dict, termination: Termination | None) -> TrainResult:
    """The trainer's result from the termination message, or a Failed result saying what happened."""
    message = termination.message.strip() if termination else ""
    if message.startswith("{"):
        try:
            return _parse(message)
        except (ValidationError, ValueError):
            pass  # a crash's log tail that happens to start with "{": explained below
    if job_phase(job) == "Succeeded":
        return TrainResult(phase="Failed", reason="the trainer exited 0 without writing its result")
    return TrainResult(phase="Failed", reason=_explain(job, termination))


def failed_gate(result: TrainResult) -> str | None:
    ordered = [*GATE_ORDER, *(name for name in result.gates if name not in GATE_ORDER)]
    return next((name for name in ordered if name in result.gates and not result.gates[name].passed), None)


def _gate_conditions(result: TrainResult, generation: int | None) -> list:
    gate = failed_gate(result)
    if gate:
        title = GATE_TITLES.get(gate, gate[:1].upper() + gate[1:])
        gates = condition(GATES_PASSED, False, f"{title}GateFailed", result.reason, generation)
        return [condition(READY, False, "GateFailed", result.reason, generation), gates]
    if result.phase == "Succeeded":
        checked = ", ".join(result.gates) or "no gate was enabled"
        message = f"exported to {result.artifact.uri}" if result.artifact else ""
        return [
            condition(READY, True, "Succeeded", message, generation),
            condition(GATES_PASSED, True, "AllGatesPassed", checked, generation),
        ]
    gates_state = True if result.gates else None
    reason = OUT_OF_MEMORY if result.reason.startswith(f"{OUT_OF_MEMORY}:") else "TrainingFailed"
    return [
        condition(READY, False, reason, result.reason, generation),
        condition(
            GATES_PASSED, gates_state, "AllGatesPassed" if result.gates else "NotEvaluated", "", generation
        ),
    ]


def _times(job: dict, termination: Termination | None) -> dict:
    status = job.get("status") or {}
    ended = (
        status.get("completionTime")
        or _failed_condition(job).get("lastTransitionTime")
        or (termination.finished_at if termination else None)
    )
    return {"start_time": status.get("startTime"), "completion_time": ended}


PROGRESS_MAX = 512
RESTARTING = "TrainerRestarting"


def progress_text(log: str) -> str | None:
    """status.progress from the tail of a trainer's log: its stage and latest epoch line, or None while
    the log holds no progress line (crucible.api.progress reads the trainer's line format)."""
    progress = progress_of(log)
    if progress is None:
        return None
    stage, line = progress.get("stage", ""), progress.get("line", "")
    text = f"{stage}: {line}" if stage and line else stage or line
    return text[:PROGRESS_MAX] or None


def in_progress_status(
    job: dict,
    generation: int | None,
    previous: list[dict] | None,
    pods: list[dict] | None = None,
    progress: str | None = None,
    was_running: bool = False,
    claim: tuple[str, str] | None = None,
) -> TrainingRunStatus:
    """Pending or Running: no verdict yet. Pending says why the pod does not run, when its status does,
    or `claim` (claims.claim_problem: a claim it mounts is missing or unbound) says so first; `progress`
    (the last one read from the log) is kept while the run runs.

    A run that was Running stays Running while its Job replaces an evicted or deleted pod (the Job has
    no pod ready then, as before the first one started): the next pod resumes from the checkpoint, so
    the run is not back to its start; Ready says why no trainer runs right now."""
    phase = job_phase(job)
    reason, message = phase, "training" if phase == "Running" else "waiting for the trainer pod to start"
    waiting = (claim or waiting_reason(pods or [])) if phase == "Pending" else None
    if phase == "Pending" and was_running:
        phase, reason, message = (
            "Running",
            RESTARTING,
            "the trainer pod is being replaced; it resumes from its checkpoint",
        )
    if waiting is not None:
        reason, message = waiting
    conditions = [
        condition(READY, False, reason, message, generation),
        condition(GATES_PASSED, None, "NotEvaluated", "", generation),
    ]
    return TrainingRunStatus(
        phase=phase,
        reason=f"{reason}: {message}" if waiting is not None else None,
        job_name=job["metadata"]["name"],
        start_time=(job.get("status") or {}).get("startTime"),
        observed_generation=generation,
        progress=progress if phase == "Running" else None,
        conditions=carried_over(previous, conditions),
    )


def finished_status(
    job: dict,
    termination: Termination | None,
    generation: int | None,
    previous: list[dict] | None,
) -> TrainingRunStatus:
    """Succeeded or Failed, with the trainer's gates, metrics and artifact."""
    result = read_result(job, termination)
    return TrainingRunStatus(
        phase=result.phase,
        reason=result.reason or None,
        job_name=job["metadata"]["name"],
        observed_generation=generation,
        gates={name: GateStatus.model_validate(gate.model_dump()) for name, gate in result.gates.items()}
        or None,
        metrics=dict(result.metrics) or None,
        fingerprints=dict(result.fingerprints or {}) or None,
        outcomes=_optional(HeldOutOutcomes, result.outcomes),
        evaluation=_optional(EvaluationSummary, result.evaluation),
        pruning=PruningStatus(available=result.pruning.available, reason=result.pruning.reason or None)
        if result.pruning
        else None,
        artifact=ArtifactStatus(uri=result.artifact.uri, sha256=result.artifact.sha256)
        if result.artifact and result.phase == "Succeeded"
        else None,
        conditions=carried_over(previous, _gate_conditions(result, generation)),
        **_times(job, termination),
    )


def _optional(model: type[StatusModel], value: dict | None) -> StatusModel | None:
    """A part of the result only comparisons and pages use: left out when it does not fit the status
    schema (a trainer of another version), rather than failing the run's whole status."""
    try:
        return model.model_validate(value) if value else None
    except ValidationError:
        return None


def invalid_status(
    error: InvalidSpec, generation: int | None, previous: list[dict] | None
) -> TrainingRunStatus:
    """A spec this cluster cannot run: Failed before any Job exists, naming the field."""
    conditions = [
        condition(READY, False, "InvalidSpec", str(error), generation),
        condition(GATES_PASSED, None, "NotEvaluated", "", generation),
    ]
    return TrainingRunStatus(
        phase="Failed",
        reason=f"InvalidSpec: {error}",
        observed_generation=generation,
        conditions=carried_over(previous, conditions),
    )


def lost_status(job_name: str, generation: int | None, previous: list[dict] | None) -> TrainingRunStatus:
    """The Job went away before its result was recorded (deleted by hand, or by its TTL while the
    operator was stopped): Failed, and not trained again behind the user's back, since a second Job
    would write over the same artifact directory."""
    message = (
        f"the trainer Job {job_name} was deleted before its result was recorded; "
        "create a new TrainingRun to train again"
    )
    conditions = [
        condition(READY, False, "JobLost", message, generation),
        condition(GATES_PASSED, None, "NotEvaluated", "", generation),
    ]
    return TrainingRunStatus(
        phase="Failed",
        reason=f"JobLost: {message}",
        job_name=job_name,
        observed_generation=generation,
        conditions=carried_over(previous, conditions),
    )
