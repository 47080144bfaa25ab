"""Why a trainer pod waits for a PersistentVolumeClaim: the claim is missing from the run's namespace, or
it exists but no volume is bound to it yet (pure: the claims and their Events are read by reconcile.py).

The scheduler holds such a pod back with a generic Unschedulable message; a run waiting on its
artifacts claim should say which claim, in which namespace, and what to do about it instead.
"""

from __future__ import annotations

CLAIM_NOT_FOUND, CLAIM_PENDING = "ClaimNotFound", "ClaimPending"
EVENT_MESSAGE_MAX = 300


def _pod_spec(job: dict) -> dict:
    return (((job.get("spec") or {}).get("template") or {}).get("spec")) or {}


def claims_of(job: dict) -> dict[str, bool]:
    """The claims the Job's pod mounts, in order: name -> whether it is the run's output (written)."""
    writable: dict[str, bool] = {}
    for volume in _pod_spec(job).get("volumes") or []:
        source = volume.get("persistentVolumeClaim") or {}
        if source.get("claimName"):
            writable[source["claimName"]] = not source.get("readOnly", False)
    return writable


def scheduled(pods: list[dict]) -> bool:
    """A pod of the Job was placed on a node: its claims were there and bound then."""
    return any((pod.get("spec") or {}).get("nodeName") for pod in pods)


def _not_found(claim: str, namespace: str, output: bool) -> str:
    fix = (
        "create it or set spec.output.uri / the chart's artifacts values, see docs/install.md"
        if output
        else "create it or change spec.dataset.uri"
    )
    return f"persistentvolumeclaim '{claim}' not found in namespace '{namespace}': {fix}"


def _latest_event(events: list[dict]) -> str:
    """The newest Event's message about the claim (ProvisioningFailed, ExternalProvisioning...)."""

    def when(event: dict) -> str:
        return (
            event.get("lastTimestamp")
            or event.get("eventTime")
            or event["metadata"].get("creationTimestamp", "")
        )

    if not events:
        return ""
    latest = max(events, key=when)
    return f"{latest.get('reason', '')}: {latest.get('message', '')}"[:EVENT_MESSAGE_MAX].strip(": ")


def _pending(claim: dict, namespace: str, events: list[dict]) -> str:
    spec = claim.get("spec") or {}
    name = claim["metadata"]["name"]
    storage_class = spec.get("storageClassName")
    if storage_class is None:
        where = "no storageClassName and no default StorageClass"
    elif storage_class == "":
        where = "storageClassName '' (binds only to a PersistentVolume made for it)"
    else:
        where = f"StorageClass '{storage_class}'"
    modes = ", ".join(spec.get("accessModes") or []) or "no access mode"
    message = f"persistentvolumeclaim '{name}' in namespace '{namespace}' is Pending ({where}, {modes})"
    detail = _latest_event(events)
    if detail:
        message += f": {detail}"
    if "ReadWriteMany" in (spec.get("accessModes") or []):
        message += "; many default StorageClasses cannot provision ReadWriteMany, see docs/install.md"
    return message


def claim_problem(
    job: dict, claims: dict[str, dict | None], events: dict[str, list[dict]]
) -> tuple[str, str] | None:
    """(reason, message) for the first claim of the Job's pod that is missing or not bound, else None.
    `claims` holds each claim as read (None: not found); `events` the Events about each claim."""
    namespace = job["metadata"]["namespace"]
    for name, output in claims_of(job).items():
        if name not in claims:
            continue  # not read (the pod was scheduled already)
        claim = claims[name]
        if claim is None:
            return CLAIM_NOT_FOUND, _not_found(name, namespace, output)
        if (claim.get("status") or {}).get("phase", "Pending") == "Pending":
            return CLAIM_PENDING, _pending(claim, namespace, events.get(name, []))
    return None
