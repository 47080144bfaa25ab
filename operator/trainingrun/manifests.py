"""A TrainingRun's children: the ConfigMap holding its spec and the trainer Job (pure builders)."""

from __future__ import annotations

from crucible.operator.kube import naming, pods
from crucible.operator.trainingrun.config import TrainingConfig
from crucible.operator.trainingrun.plan import SPEC_DIR, SPEC_FILE, TrainingPlan

CONTAINER = "trainer"
TERMINATION_LOG = "/dev/termination-log"
SPEC_VOLUME = "spec"
# DataLoader workers hand batches to the trainer through shared memory (/dev/shm), which container
# runtimes give 64 MiB by default: too little for a few batches of photos at 224, and a worker then
# dies with a bus error. A memory-backed emptyDir replaces it; what it holds counts against the
# container's memory limit, so it is sized to that limit: never more than the pod may use anyway.
SHM_VOLUME, SHM_PATH = "dshm", "/dev/shm"
# crucible-train exits 1 when a gate or training failed and 2 on invalid input: the same spec would
# fail the same way again, so the Job fails at once instead of retrying. 137 is SIGKILL, which a node's
# OOM killer sends a container over its memory limit: the same limit would be hit again, so that fails
# the Job too (an evicted or preempted pod, killed the same way, is ignored by the rule before it).
# Other failures (a node lost, the pod deleted) are retried up to backoffLimit.
FINAL_EXIT_CODES = [1, 2, 137]


def spec_config_map(plan: TrainingPlan) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": naming.spec_config_map_name(plan.name),
            "namespace": plan.namespace,
            "labels": naming.training_labels(plan.name),
        },
        "data": {SPEC_FILE: plan.spec_json},
    }


def trainer_command(plan: TrainingPlan) -> list[str]:
    return [
        "crucible-train",
        "--spec",
        f"{SPEC_DIR}/{SPEC_FILE}",
        "--name",
        plan.name,
        "--output",
        plan.output_dir,
        "--artifact-uri",
        plan.output.uri,
        "--termination-log",
        TERMINATION_LOG,
        "--device",
        plan.pod.device,
        *plan.study_args,
    ]


def _container(plan: TrainingPlan) -> dict:
    _, mounts = pods.claim_volumes(plan.pod)
    mounts = [
        {"name": SPEC_VOLUME, "mountPath": SPEC_DIR, "readOnly": True},
        *mounts,
        {"name": SHM_VOLUME, "mountPath": SHM_PATH},
    ]
    return {
        **pods.main_container(plan.pod, CONTAINER, plan.pod.images.trainer, trainer_command(plan), mounts),
        # The trainer writes its result JSON here; when it crashed before writing, the log's tail is
        # the message instead, so the run's status still says why.
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def trainer_job(plan: TrainingPlan, limits: TrainingConfig) -> dict:
    labels = naming.training_labels(plan.name)
    volumes, _ = pods.claim_volumes(plan.pod)
    spec_volume = {"name": SPEC_VOLUME, "configMap": {"name": naming.spec_config_map_name(plan.name)}}
    shm_volume = {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": plan.pod.memory}}
    pod_spec = {
        "restartPolicy": "Never",
        # The trainer never talks to the Kubernetes API.
        "automountServiceAccountToken": False,
        "securityContext": dict(pods.POD_SECURITY),
        **pods.placement(plan.pod),
        "containers": [_container(plan)],
        "volumes": [spec_volume, *volumes, shm_volume],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": naming.job_name(plan.name), "namespace": plan.namespace, "labels": labels},
        "spec": {
            "backoffLimit": limits.backoff_limit,
            "activeDeadlineSeconds": limits.active_deadline_seconds,
            "ttlSecondsAfterFinished": limits.ttl_seconds_after_finished,
            "podFailurePolicy": {
                "rules": [
                    # A pod evicted or preempted is not the trainer's fault: retry without counting it.
                    # First, since such a pod may also have been killed with SIGKILL (137).
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": FINAL_EXIT_CODES,
                        },
                    },
                ]
            },
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }


def training_children(plan: TrainingPlan, limits: TrainingConfig) -> list[dict]:
    """In creation order: the Job mounts the ConfigMap, so the ConfigMap comes first."""
    return [spec_config_map(plan), trainer_job(plan, limits)]
