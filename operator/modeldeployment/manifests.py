"""A ModelDeployment's children: the server Deployment, its Service and PodDisruptionBudget (pure)."""

from __future__ import annotations

from crucible import API_GROUP
from crucible.operator.kube import naming, pods
from crucible.operator.modeldeployment.plan import ServingPlan

CONTAINER = "server"
PORT = 8080
SERVICE_PORT = 80
LIVE = "/v2/health/live"
READY = "/v2/health/ready"
MODEL_SHA256 = f"{API_GROUP}/model-sha256"
MODEL_RUN = f"{API_GROUP}/training-run"
PRE_STOP_SECONDS = 5


def server_command(plan: ServingPlan) -> list[str]:
    server = plan.spec.server
    return [
        "crucible",
        "serve",
        "--model",
        plan.model,
        "--name",
        plan.name,
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--max-batch-size",
        str(server.max_batch_size),
        "--max-batch-delay-ms",
        str(server.max_batch_delay_ms),
        "--max-queue-images",
        str(server.max_queue_images),
        "--device",
        plan.pod.device,
        *capture_arguments(plan),
    ]


def capture_arguments(plan: ServingPlan) -> list[str]:
    capture = plan.spec.capture
    if plan.capture is None:
        return []
    arguments = ["--capture", plan.capture, "--capture-sample-rate", str(capture.sample_rate)]
    if capture.max_bytes_per_day is not None:
        arguments += ["--capture-max-bytes-per-day", str(capture.max_bytes_per_day)]
    return arguments


def _probe(path: str, period: int, failures: int) -> dict:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _container(plan: ServingPlan) -> dict:
    _, mounts = pods.claim_volumes(plan.pod)
    container = pods.main_container(plan.pod, CONTAINER, plan.pod.images.server, server_command(plan), mounts)
    return {
        **container,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        # Loading, checking the sha256 and warming up may take a while: the startup probe gives it
        # up to 5 minutes before liveness applies; readiness keeps traffic away until the model is ready.
        "startupProbe": _probe(LIVE, period=5, failures=60),
        "livenessProbe": _probe(LIVE, period=10, failures=3),
        "readinessProbe": _probe(READY, period=5, failures=3),
        # Endpoints are removed while the pod is stopping, but proxies on other nodes learn of it a
        # moment later: keep answering for that moment, then drain (SIGTERM) within the grace period.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
    }


def server_deployment(plan: ServingPlan, training_run: str, sha256: str, track: str = "stable") -> dict:
    labels = naming.server_labels(plan.name, track)
    volumes, _ = pods.claim_volumes(plan.pod)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": naming.deployment_name(plan.name, track),
            "namespace": plan.namespace,
            "labels": labels,
        },
        "spec": {
            "replicas": plan.spec.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": dict(labels)},
            # New replicas must be ready before an old one stops: serving capacity never drops.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": plan.spec.rollout.max_surge},
            },
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    # A new model changes the pod template, and so rolls the Deployment.
                    "annotations": {
                        MODEL_RUN: training_run,
                        MODEL_SHA256: sha256,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": dict(pods.POD_SECURITY),
                    "terminationGracePeriodSeconds": 30,
                    **pods.placement(plan.pod),
                    "containers": [_container(plan)],
                    "volumes": volumes,
                },
            },
        },
    }


def server_service(plan: ServingPlan) -> dict:
    """One Service for every track of the deployment: a canary added later shares it."""
    return _service(plan, naming.service_name(plan.name), naming.server_selector(plan.name))


def stable_service(plan: ServingPlan) -> dict:
    """The stable track only: for clients that must never be answered by a candidate under analysis."""
    selector = {**naming.server_selector(plan.name), naming.TRACK: "stable"}
    return _service(plan, naming.stable_service_name(plan.name), selector)


def _service(plan: ServingPlan, name: str, selector: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": plan.namespace,
            "labels": naming.server_labels(plan.name),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def disruption_budget(plan: ServingPlan) -> dict:
    """With several replicas, a node drain takes at most one server away at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": naming.disruption_budget_name(plan.name),
            "namespace": plan.namespace,
            "labels": naming.server_labels(plan.name),
        },
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": naming.server_selector(plan.name)}},
    }


def service_url(plan: ServingPlan) -> str:
    return f"http://{naming.service_name(plan.name)}.{plan.namespace}.svc:{SERVICE_PORT}"
