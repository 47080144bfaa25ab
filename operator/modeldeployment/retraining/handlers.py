"""Which ModelDeployments have a retraining policy: a live index the retraining loop follows (main.py,
kube/periodic.py). An index, not a kopf timer: a timer would put a finalizer on every ModelDeployment
it follows."""

from __future__ import annotations

import kopf

from crucible.operator.kube.periodic import indexed
from crucible.operator.kube.resources import MODEL_DEPLOYMENTS


@kopf.index(*MODEL_DEPLOYMENTS)
def retraining_policies(namespace: str, name: str, spec: kopf.Spec, **_: object) -> dict | None:
    return indexed(namespace, name) if spec.get("retraining") else None
