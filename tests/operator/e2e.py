"""Helpers the end-to-end tests share: reading resources back, checking what the operator created."""

from __future__ import annotations

import re

import kmock
import kubernetes_validate

from crucible.api import crd
from tests.operator.fake_cluster import Cluster, eventually

KUBERNETES_VERSION = "1.33"
RUNS = "crucible.dev/v1alpha1/trainingruns"
DEPLOYMENTS = "crucible.dev/v1alpha1/modeldeployments"
# What the operator creates; the test kubelet creates the pods.
CHILD_KINDS = ("configmaps", "jobs", "deployments", "services", "poddisruptionbudgets")


def status_of(cluster: Cluster, resource: str, name: str) -> dict:
    return (cluster.get(resource, name) or {}).get("status") or {}


def condition_of(status: dict, kind: str) -> dict:
    return next((item for item in status.get("conditions") or [] if item["type"] == kind), {})


async def run_phase(cluster: Cluster, name: str, phases: tuple[str, ...], timeout: float = 60) -> dict:
    try:
        await eventually(
            lambda: status_of(cluster, RUNS, name).get("phase") in phases, timeout, f"{name} in {phases}"
        )
    except AssertionError as error:
        raise AssertionError(f"{error}\n{what_the_cluster_shows(cluster)}") from None
    return status_of(cluster, RUNS, name)


def what_the_cluster_shows(cluster: Cluster) -> str:
    """Where a run stands, for a test that timed out waiting on it: each run's status, each Job's
    and pod's state, and the last Events (which say why a pod is not scheduled or a Job waits)."""
    lines = []
    for name, run in _objects(cluster, RUNS).items():
        lines.append(f"TrainingRun {name}: {run.get('status') or {}}")
    for name, job in _objects(cluster, "batch/v1/jobs").items():
        lines.append(f"Job {name}: {job.get('status') or {}}")
    for name, pod in _objects(cluster, "v1/pods").items():
        status = pod.get("status") or {}
        conditions = [(c["type"], c["status"], c.get("reason", "")) for c in status.get("conditions") or []]
        node = pod["spec"].get("nodeName")
        lines.append(f"Pod {name}: {status.get('phase')} on {node}, {conditions}")
    events = sorted(
        _objects(cluster, "v1/events").values(),
        key=lambda event: event.get("lastTimestamp") or event.get("eventTime") or "",
    )
    for event in events[-15:]:
        about = event.get("involvedObject") or {}
        lines.append(
            f"Event {about.get('kind')}/{about.get('name')}: {event.get('reason')} {event.get('message')}"
        )
    return "\n".join(lines)


def _objects(cluster: Cluster, resource: str) -> dict[str, dict]:
    try:
        return cluster.objects_of(resource)
    except KeyError:  # a resource the cluster does not hold or mirror
        return {}


def created_by_operator(cluster: Cluster) -> list[dict]:
    return [
        request.data
        for request in cluster.requests
        if request.action == kmock.action.CREATE
        and request.resource is not None
        and request.resource.plural in CHILD_KINDS
        and isinstance(request.data, dict)
    ]


def assert_created_manifests_are_valid(cluster: Cluster) -> int:
    manifests = created_by_operator(cluster)
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        owners = manifest["metadata"]["ownerReferences"]
        assert len(owners) == 1 and owners[0]["controller"] and owners[0]["blockOwnerDeletion"]
        assert owners[0]["uid"], manifest["metadata"]["name"]
    return len(manifests)


_STEP = re.compile(r'\.(\w+(?:\[\?\(@\.\w+=="[^"]*"\)\])?)')
_FILTER = re.compile(r'^(\w+)\[\?\(@\.(\w+)=="([^"]*)"\)\]$')


def _json_path(body: object, path: str) -> object:
    """The value at a printer column's JSONPath: `.a.b` steps, and `.list[?(@.key=="value")]` filters
    (the forms our CRDs use), as the API server evaluates them for `kubectl get`; None when absent."""
    value = body
    for step in _STEP.findall(path):
        matched = _FILTER.match(step)
        key = matched.group(1) if matched else step
        value = value.get(key) if isinstance(value, dict) else None
        if matched and isinstance(value, list):
            _, field, wanted = matched.groups()
            value = next((item for item in value if item.get(field) == wanted), None)
    return value


def printer_row(body: dict) -> dict[str, object]:
    """What `kubectl get` prints for a custom resource: its printer columns, by name."""
    kind = next(kind for kind in crd.kinds() if kind.kind == body["kind"])
    (version,) = crd.custom_resource_definition(kind)["spec"]["versions"]
    return {
        column["name"]: _json_path(body, column["jsonPath"]) for column in version["additionalPrinterColumns"]
    }
