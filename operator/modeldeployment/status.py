"""Whether a TrainingRun may be served, and a ModelDeployment's status from its Deployment (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from crucible.api.manifest import InvalidSpec
from crucible.api.status import Condition, ModelDeploymentStatus, ServedModel
from crucible.operator.kube.artifacts import ArtifactLocation, parse_artifact_uri
from crucible.operator.kube.conditions import carried_over, condition

READY, PROGRESSING = "Ready", "Progressing"
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


def _counts(deployment: dict | None) -> dict:
    status = (deployment or {}).get("status") or {}
    return {
        "replicas": status.get("replicas"),
        "ready_replicas": status.get("readyReplicas"),
        "updated_replicas": status.get("updatedReplicas"),
        "available_replicas": status.get("availableReplicas"),
    }


def _status(
    body: dict, conditions: list[Condition], deployment: dict | None, **fields: object
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
        **{**kept, **_counts(deployment), **fields},
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
    return _status(body, conditions, deployment)


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
    also_available: int = 0,
) -> ModelDeploymentStatus:
    """Ready: the servers answer at full capacity (while a rollout replaces replicas, old ones serve:
    maxUnavailable is 0). Progressing: a rollout is under way. A rollout the Deployment controller gave
    up on (its progressDeadlineSeconds) is neither: the model asked for is not being served.
    `also_available`: ready replicas of another track behind the same Service (a canary)."""
    generation = body["metadata"].get("generation")
    complete, reason, message = rollout_state(deployment, replicas)
    message = f"{message} ({model.training_run})"
    available = available_replicas(deployment) + also_available >= replicas
    if not complete and _deadline_exceeded(deployment):
        stuck = f"the Deployment made no progress within its deadline: {message}"
        progressing = condition(PROGRESSING, False, DEADLINE_EXCEEDED, stuck)
        ready = condition(READY, False, DEADLINE_EXCEEDED, stuck, generation)
    else:
        serving = complete or available
        moving = "RolloutComplete" if complete else "RollingOut"
        progressing = condition(PROGRESSING, not complete, moving, message)
        ready = condition(READY, serving, "ServingModel" if serving else reason, message, generation)
    conditions = [ready, progressing]
    return _status(
        body,
        conditions,
        deployment,
        current_model=model,
        deployment_name=deployment["metadata"]["name"],
        service_name=service_name,
        url=url,
    )
