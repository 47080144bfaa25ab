"""Reaching one server pod directly (pure): the canary analysis reads each candidate pod's /metrics and
the retraining loop asks one pod for the capture counts, both by pod address rather than through the
Service, which balances over every track."""

from __future__ import annotations

from crucible.operator.modeldeployment.manifests import PORT


def ready_address(pod: dict) -> str | None:
    """The pod's IP when it is Ready to answer (an address and the Ready condition True), else None."""
    status = pod.get("status") or {}
    ready = any(
        item.get("type") == "Ready" and item.get("status") == "True"
        for item in status.get("conditions") or []
    )
    return status.get("podIP") or None if ready else None


def server_url(pod_ip: str, path: str) -> str:
    """A URL on a server pod; an IPv6 pod address goes in brackets, as URLs require."""
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    return f"http://{host}:{PORT}{path}"
