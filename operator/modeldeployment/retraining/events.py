"""A Kubernetes Event about a ModelDeployment, as a manifest (pure). The retraining loop runs outside
kopf's handlers, where kopf.event() has no queue to post to, so it creates its Events itself."""

from __future__ import annotations

from datetime import datetime

from crucible.operator.kube import naming


def event_manifest(deployment: dict, kind: str, reason: str, message: str, at: datetime) -> dict:
    metadata = deployment["metadata"]
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
        "involvedObject": {
            "apiVersion": deployment.get("apiVersion", naming.API_VERSION_STRING),
            "kind": "ModelDeployment",
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata.get("uid"),
        },
        "type": kind,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": naming.MANAGER},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
