"""Whether a TrainingRun may be served, and a ModelDeployment's status from its Deployment (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from crucible.api.manifest import InvalidSpec
from crucible.api.status import Condition, ModelDeploymentStatus, ServedModel
from crucible.operator.kube.artifacts import ArtifactLocation, parse_artifact_uri
from crucible.operator.kube.conditions import carried_over, condition, find

READY, PROGRESSING = "Ready", "Progressing"
# The TrainingRun of the served model was deleted: its servers keep serving (the artifact stays).
MODEL_AVAILABLE, MODEL_DELETED = "ModelAvailable", "ModelDeleted"
# Right after a rollback the stable track regains the replicas the canary held: still serving.
RESTORING_CAPACITY = "RestoringCapacity"
# Every wanted replica runs the model and is available; more are still stopping (a rollout's old
# replicas, or a stable track giving way to a canary): serving, though the rollout is not complete.
SCALING_DOWN = "ScalingDown"
DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"  # the Deployment controller's own reason


@dataclass(frozen=True)
class Verdict:
    """Whether a run's artifact may be served; if not, a CamelCase reason and a sentence."""

    servable: bool
    reason: str
    message: str = ""
    artifact: ArtifactLocation | None = None
    model: ServedModel | None = None


def _refuse(reason: str, message: str) -> Verdict:
    return Verdict(False, reason, message)


def judge(run: dict | None, run_name: str) -> Verdict:
    """Only a Succeeded run whose every gate passed, with an artifact a server can read (a volume's
    directory or an S3 prefix), is ever served."""
    if run is None:
        return _refuse("TrainingRunNotFound", f"TrainingRun {run_name} does not exist in this namespace")
    status = run.get("status") or {}
    phase = status.get("phase")
    if phase != "Succeeded":
        why = f": {status['reason']}" if status.get("reason") else ""
        return _refuse(
            "TrainingRunNotSucceeded",
            f"TrainingRun {run_name} is {phase or 'not started'}{why}; only a Succeeded run is served",
        )
    failed = sorted(name for name, gate in (status.get("gates") or {}).items() if not gate.get("passed"))
    if failed:
        return _refuse("GatesNotPassed", f"TrainingRun {run_name} did not pass: {', '.join(failed)}")
    artifact = status.get("artifact") or {}
    if not artifact.get("uri") or not artifact.get("sha256"):
        return _refuse("ArtifactMissing", f"TrainingRun {run_name} reports no artifact")
    try:
        location = parse_artifact_uri(artifact["uri"], "status.artifact.uri")
    except InvalidSpec as error:
        return _refuse("ArtifactNotMountable", f"TrainingRun {run_name}: {error.detail}")
    accuracy = (status.get("metrics") or {}).get("accuracy")
    model = ServedModel(
        training_run=run_name, uri=artifact["uri"], sha256=artifact["sha256"], accuracy=accuracy
    )
    return Verdict(True, "Servable", artifact=location, model=model)


def available_replicas(deployment: dict | None) -> int:
    """Replicas of a Deployment that answer (ready for minReadySeconds): its serving capacity."""
    return int(((deployment or {}).get("status") or {}).get("availableReplicas") or 0)


def rollout_state(deployment: dict | None, replicas: int) -> tuple[bool, str, str]:
    """(ready, reason, message): ready once every replica runs the current template and is available."""
    if deployment is None:
        return False, "DeploymentMissing", "the server Deployment does not exist yet"
    status = deployment.get("status") or {}
    generation = deployment.get("metadata", {}).get("generation")
    if generation is not None and (status.get("observedGeneration") or 0) < generation:
        return False, "RollingOut", "the Deployment controller has not acted on the new spec yet"
    updated, available = status.get("updatedReplicas") or 0, status.get("availableReplicas") or 0
    if updated < replicas:
        return False, "RollingOut", f"{updated} of {replicas} replicas run the current model"
    if available < replicas:
        return False, "ReplicasNotReady", f"{available} of {replicas} replicas are available"
    if (status.get("replicas") or 0) > replicas:
        stopping = f"{replicas} of {replicas} replicas are available; extra ones are stopping"
        return False, SCALING_DOWN, stopping
    return True, "ServingModel", f"{replicas} of {replicas} replicas are available"


def _counts(*deployments: dict | None) -> dict:
    """The replica counts of every track behind the Service, summed (None where no track reports one)."""
    counts = {}
    for key, field in (
        ("replicas", "replicas"),
        ("ready_replicas", "readyReplicas"),
        ("updated_replicas", "updatedReplicas"),
        ("available_replicas", "availableReplicas"),
    ):
        values = [((item or {}).get("status") or {}).get(field) for item in deployments]
        known = [int(value) for value in values if value is not None]
        counts[key] = sum(known) if known else None
    return counts


@dataclass(frozen=True)
class Track:
    """A second track behind the same Service: its Deployment, how many replicas it should have (0 for a
    canary that is going away), and the run its servers run."""

    deployment: dict | None
    replicas: int
    run: str


def _status(
    body: dict, conditions: list[Condition], deployments: tuple[dict | None, ...], **fields: object
) -> ModelDeploymentStatus:
    previous = body.get("status") or {}
    generation = body["metadata"].get("generation")
    kept = {
        "current_model": previous.get("currentModel"),
        "deployment_name": previous.get("deploymentName"),
        "service_name": previous.get("serviceName"),
        "url": previous.get("url"),
        # Promotion bookkeeping outlives any one reconcile: a rejected candidate is never retried.
        "history": previous.get("history"),
        "rejected": previous.get("rejected"),
    }
    return ModelDeploymentStatus(
        observed_generation=generation,
        conditions=carried_over(previous.get("conditions"), conditions),
        **{**kept, **_counts(*deployments), **fields},
    )


def not_served_status(
    body: dict, reason: str, message: str, deployment: dict | None
) -> ModelDeploymentStatus:
    """The requested model cannot be served: say why; whatever runs keeps running, untouched."""
    generation = body["metadata"].get("generation")
    current = ((body.get("status") or {}).get("currentModel") or {}).get("trainingRun")
    if current:
        message = f"{message}; still serving {current}"
    conditions = [
        condition(READY, False, reason, message, generation),
        condition(PROGRESSING, False, reason, message, generation),
    ]
    return _status(body, conditions, (deployment,))


def _deadline_exceeded(deployment: dict) -> bool:
    conditions = (deployment.get("status") or {}).get("conditions") or []
    wanted = (PROGRESSING, "False", DEADLINE_EXCEEDED)
    return any((item.get("type"), item.get("status"), item.get("reason")) == wanted for item in conditions)


def serving_status(
    body: dict,
    model: ServedModel,
    deployment: dict,
    service_name: str,
    url: str,
    replicas: int,
    canary: Track | None = None,
    capacity: int | None = None,
    restoring: bool = False,
) -> ModelDeploymentStatus:
    """Ready: the servers answer at full capacity (while a rollout replaces replicas, old ones serve:
    maxUnavailable is 0). Progressing: a rollout is under way. A rollout the Deployment controller gave
    up on (its progressDeadlineSeconds) is neither: the model asked for is not being served.

    `replicas`: what the stable track should have. `canary`: the canary track behind the same Service;
    its replicas count with the stable ones, and its available ones serve too. `capacity`: the replicas
    both tracks together should serve (spec.replicas; by default `replicas`). `restoring`: the stable
    track is regaining the replicas of a canary just rolled back; it serves meanwhile, so Ready does not
    drop for those seconds."""
    generation = body["metadata"].get("generation")
    complete, reason, message = rollout_state(deployment, replicas)
    available, intended = available_replicas(deployment), capacity or replicas
    tracks: tuple[dict | None, ...] = (deployment,)
    if canary is not None and (canary.deployment is not None or canary.replicas > 0):
        canary_complete, canary_reason, canary_message = rollout_state(canary.deployment, canary.replicas)
        if complete and not canary_complete:
            reason, message = canary_reason, f"canary: {canary_message}"
        complete = complete and canary_complete
        available += available_replicas(canary.deployment)
        tracks = (deployment, canary.deployment)
        if complete:
            # At a weight of 100 the stable track still keeps one replica: more than spec.replicas serve.
            on_canary = available_replicas(canary.deployment)
            counted = (
                f"{available} of {intended}" if available <= intended else f"{available} ({intended} wanted)"
            )
            message = (
                f"{counted} replicas are available "
                f"({available - on_canary} on {model.training_run}, {on_canary} on the canary {canary.run})"
            )
        else:
            message = f"{message} ({model.training_run}; canary {canary.run})"
    else:
        message = f"{message} ({model.training_run})"
    serving = available >= intended
    if not complete and _deadline_exceeded(deployment):
        stuck = f"the Deployment made no progress within its deadline: {message}"
        progressing = condition(PROGRESSING, False, DEADLINE_EXCEEDED, stuck)
        ready = condition(READY, False, DEADLINE_EXCEEDED, stuck, generation)
    elif not complete and not serving and restoring and available > 0:
        message = (
            f"{available} of {intended} replicas are available ({model.training_run}); the stable track "
            "is regaining the replicas of the canary rolled back"
        )
        progressing = condition(PROGRESSING, True, RESTORING_CAPACITY, message)
        ready = condition(READY, True, "ServingModel", message, generation)
    else:
        serving = complete or serving
        moving = "RolloutComplete" if complete else "RollingOut"
        progressing = condition(PROGRESSING, not complete, moving, message)
        ready = condition(READY, serving, "ServingModel" if serving else reason, message, generation)
    conditions = [ready, progressing]
    return _status(
        body,
        conditions,
        tracks,
        current_model=model,
        deployment_name=deployment["metadata"]["name"],
        service_name=service_name,
        url=url,
    )


def restoring_capacity(body: dict) -> bool:
    """Whether the last status said the stable track was regaining a rolled-back canary's replicas (it
    says so until the track is complete again)."""
    progressing = find((body.get("status") or {}).get("conditions"), PROGRESSING) or {}
    return progressing.get("reason") == RESTORING_CAPACITY and progressing.get("status") == "True"


def was_ready(body: dict) -> bool:
    return (find((body.get("status") or {}).get("conditions"), READY) or {}).get("status") == "True"


def with_model_deleted(body: dict, status: ModelDeploymentStatus) -> ModelDeploymentStatus:
    """`status` with ModelAvailable False: the TrainingRun of the served model was deleted. Its servers
    keep serving (the artifact is still where they read it); Ready still says how they serve."""
    assert status.current_model is not None
    model = status.current_model
    message = (
        f"TrainingRun {model.training_run} was deleted; its servers keep serving its artifact "
        f"{model.uri} (sha256 {model.sha256[:12]})"
    )
    generation = body["metadata"].get("generation")
    deleted = condition(MODEL_AVAILABLE, False, MODEL_DELETED, message, generation)
    previous = (body.get("status") or {}).get("conditions")
    return status.model_copy(update={"conditions": [*status.conditions, *carried_over(previous, [deleted])]})
