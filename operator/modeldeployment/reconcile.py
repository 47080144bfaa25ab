"""ModelDeployment -> server Deployments (stable, canary), Service and PodDisruptionBudget, for a run that
passed its gates (sources.py picks it, rollout/ puts it into service).

Events that lead here: the ModelDeployment changed, a TrainingRun it may serve changed or was deleted,
one of its Deployments' status changed, or main.py's periodic loops (the rollout tick, the resync).
Each reconciles the whole ModelDeployment from fresh reads, one at a time per ModelDeployment, so the
status written last always reflects the latest state.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import kopf

from crucible.api.manifest import InvalidSpec
from crucible.api.status import ModelDeploymentStatus, ServedModel
from crucible.operator.config import OperatorConfig
from crucible.operator.kube import naming
from crucible.operator.kube.client import Kube, Ref
from crucible.operator.kube.conditions import find
from crucible.operator.kube.ownership import unchanged
from crucible.operator.modeldeployment.plan import check_serving_spec
from crucible.operator.modeldeployment.rollout.promotion import NOT_SIGNIFICANT
from crucible.operator.modeldeployment.rollout.reconcile import Rollout
from crucible.operator.modeldeployment.rollout.status import held_back
from crucible.operator.modeldeployment.sources import Wanted, wanted
from crucible.operator.modeldeployment.status import (
    MODEL_AVAILABLE,
    MODEL_DELETED,
    not_served_status,
    with_model_deleted,
)


def deployment_ref(namespace: str, name: str) -> Ref:
    return Ref(naming.API_VERSION_STRING, "ModelDeployment", namespace, name)


class Serving:
    def __init__(self, kube: Kube, config: OperatorConfig) -> None:
        self.kube = kube
        self.config = config
        self.rollout = Rollout(kube, config)
        self._locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    async def reconcile(self, namespace: str, name: str) -> InvalidSpec | None:
        """Bring the ModelDeployment's children and status up to date; the spec's error, if any."""
        async with self._locks[(namespace, name)]:
            body = await self.kube.get(deployment_ref(namespace, name))
            if body is None:
                return None
            status, error = await self._converge(body)
            if await self._served_run_deleted(namespace, status):
                status = with_model_deleted(body, status)
            previous = body.get("status") or {}
            patch = status.to_patch()
            if not unchanged(previous, patch):
                await self.kube.patch_status(deployment_ref(namespace, name), patch)
                self._announce(body, previous, status)
            return error

    async def _converge(self, body: dict) -> tuple[ModelDeploymentStatus, InvalidSpec | None]:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        servers = Ref("apps/v1", "Deployment", namespace, naming.deployment_name(name))
        try:
            spec = check_serving_spec(body, self.config)
        except InvalidSpec as error:
            return not_served_status(body, "InvalidSpec", str(error), await self.kube.get(servers)), error
        previous = body.get("status") or {}
        current = (
            ServedModel.model_validate(previous["currentModel"]) if previous.get("currentModel") else None
        )
        rejected = list(previous.get("rejected") or [])
        want = await wanted(self.kube, namespace, spec, current, rejected, self.config.promotion)
        served = current.training_run if current else None
        if want.reason == "TrainingRunNotFound" and served and spec.model.training_run == served:
            # The pinned run that is served was deleted: its servers keep serving (with_model_deleted).
            want = Wanted(current, want.reason, want.message, pinned=True)
        if want.model is None:
            return not_served_status(body, want.reason, want.message, await self.kube.get(servers)), None
        try:
            status = await self.rollout.serve(body, spec, want.model, want.message)
            if want.reason == NOT_SIGNIFICANT:
                status = held_back(body, status, want.reason, want.message)
            return status, None
        except InvalidSpec as error:
            # Not the ModelDeployment's fault (its spec was checked above): the run's artifact is one this
            # operator cannot serve, such as an S3 artifact with no S3 storage configured.
            deployment = await self.kube.get(servers)
            return not_served_status(body, "ArtifactNotServable", str(error), deployment), None

    async def _served_run_deleted(self, namespace: str, status: ModelDeploymentStatus) -> bool:
        """Whether the TrainingRun of the model the servers run is gone (its artifact is not)."""
        if status.current_model is None:
            return False
        run = Ref(naming.API_VERSION_STRING, "TrainingRun", namespace, status.current_model.training_run)
        return await self.kube.get(run) is None

    @staticmethod
    def _announce(body: dict, previous: dict, status: ModelDeploymentStatus) -> None:
        """An Event when the served model, the readiness verdict or the served run's existence changes,
        not on every status write."""
        before = next((c for c in previous.get("conditions") or [] if c.get("type") == "Ready"), {})
        ready, progressing = status.conditions[:2]
        model = status.current_model.training_run if status.current_model else None
        if model and model != (previous.get("currentModel") or {}).get("trainingRun"):
            kopf.event(
                body,
                type="Normal",
                reason="ModelDeployed",
                message=f"rolling out the model of TrainingRun {model}",
            )
        gone = next((item for item in status.conditions if item.type == MODEL_AVAILABLE), None)
        was_gone = (find(previous.get("conditions"), MODEL_AVAILABLE) or {}).get("status") == "False"
        if gone is not None and not was_gone:
            kopf.event(body, type="Warning", reason=MODEL_DELETED, message=gone.message)
        if (before.get("status"), before.get("reason")) != (ready.status, ready.reason):
            stuck = ready.status != "True" and progressing.status != "True"
            kind = "Warning" if stuck else "Normal"
            kopf.event(body, type=kind, reason=ready.reason, message=ready.message)
