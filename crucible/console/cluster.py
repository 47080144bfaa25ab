"""The console's view of a cluster: the three custom resources and their Events, read through the
Kubernetes API with the kubeconfig or the pod's service account. Read-only: list and get only.

A TrainingRun's model card and pictures live beside its artifact (a volume or an object store) that
the console does not mount; its pages show what status holds.
"""

from __future__ import annotations

from pathlib import Path

from crucible import API_GROUP, API_VERSION
from crucible.console.source import POD_LABELS, TRACK_LABEL, NotFound

PLURAL = {"TrainingRun": "trainingruns", "TuningJob": "tuningjobs", "ModelDeployment": "modeldeployments"}
EVENTS_SHOWN = 50


def _event(item) -> dict:
    last = item.last_timestamp or item.event_time or item.first_timestamp
    return {
        "type": item.type,
        "reason": item.reason,
        "message": item.message,
        "count": item.count or 1,
        "lastTimestamp": last.isoformat() if last else None,
    }


def _pod(item) -> dict:
    statuses = item.status.container_statuses or []
    started = item.status.start_time
    return {
        "name": item.metadata.name,
        "phase": item.status.phase,
        "ready": f"{sum(1 for c in statuses if c.ready)}/{len(item.spec.containers)}",
        "restarts": sum(c.restart_count for c in statuses),
        "track": (item.metadata.labels or {}).get(TRACK_LABEL, ""),
        "started": started.isoformat() if started else None,
    }


class ClusterSource:
    has_pods = True

    def __init__(self, api_client, namespace: str | None = None, description: str = "cluster") -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.description = description

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None):
        """In-cluster credentials when running in a pod (and no kubeconfig is named), else the kubeconfig."""
        from kubernetes import client, config

        if kubeconfig is None and context is None:
            try:
                config.load_incluster_config()
                return cls(client.ApiClient(), namespace, f"cluster (in-cluster){_where(namespace)}")
            except config.ConfigException:
                pass
        try:
            api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
        except (config.ConfigException, OSError) as error:
            raise ValueError(f"--kubeconfig/--context: cannot reach a cluster: {error}") from None
        host = api_client.configuration.host
        return cls(api_client, namespace, f"cluster {host}{_where(namespace)}")

    def list(self, kind: str) -> list[dict]:
        plural = PLURAL[kind]
        if self.namespace:
            answer = self.custom.list_namespaced_custom_object(API_GROUP, API_VERSION, self.namespace, plural)
        else:
            answer = self.custom.list_cluster_custom_object(API_GROUP, API_VERSION, plural)
        return [_with_kind(item, kind) for item in answer.get("items", [])]

    def get(self, kind: str, namespace: str, name: str) -> dict:
        from kubernetes.client.exceptions import ApiException

        if self.namespace and namespace != self.namespace:
            raise NotFound(f"{kind} {namespace}/{name}: this console shows namespace {self.namespace} only")
        try:
            item = self.custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL[kind], name
            )
        except ApiException as error:
            if error.status == 404:
                raise NotFound(f"{kind} {namespace}/{name} not found") from None
            raise
        return _with_kind(item, kind)

    def events(self, kind: str, namespace: str, name: str) -> list[dict]:
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        items = self.core.list_namespaced_event(namespace, field_selector=selector).items
        events = sorted((_event(item) for item in items), key=lambda ev: ev["lastTimestamp"] or "")
        return events[-EVENTS_SHOWN:]

    def pods(self, kind: str, namespace: str, name: str) -> list[dict]:
        # Label values are object names up to 63 characters; longer names are hashed by the operator.
        if kind not in POD_LABELS or len(name) > 63:
            return []
        items = self.core.list_namespaced_pod(namespace, label_selector=f"{POD_LABELS[kind]}={name}").items
        return sorted((_pod(item) for item in items), key=lambda pod: (pod["track"], pod["name"]))

    def file(self, kind: str, namespace: str, name: str, filename: str) -> Path | None:
        return None


def _with_kind(item: dict, kind: str) -> dict:
    item.setdefault("kind", kind)
    item.setdefault("status", {})
    item["metadata"].setdefault("labels", {})
    return item


def _where(namespace: str | None) -> str:
    return f", namespace {namespace}" if namespace else ""
