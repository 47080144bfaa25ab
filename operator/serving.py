"""ModelDeployment -> server Deployment, Service and PodDisruptionBudget, for a run that passed its gates.

Three events lead here: the ModelDeployment changed, its TrainingRun changed, its Deployment's
status changed. Each reconciles the whole ModelDeployment from fresh reads, one at a time per
ModelDeployment, so the status written last always reflects the latest state.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import kopf

from crucible.api.manifest import InvalidSpec
from crucible.api.status import ModelDeploymentStatus
from crucible.operator import naming
from crucible.operator.client import Kube, Ref
from crucible.operator.config import OperatorConfig
from crucible.operator.manifests.serving import (
    disruption_budget,
    server_deployment,
    server_service,
    service_url,
)
from crucible.operator.planning import check_serving_spec, plan_serving
from crucible.operator.serving_status import Verdict, judge, not_served_status, serving_status
from crucible.operator.training import unchanged


def deployment_ref(namespace: str, name: str) -> Ref:
    return Ref(naming.API_VERSION_STRING, "ModelDeployment", namespace, name)


class Serving:
    def __init__(self, kube: Kube, config: OperatorConfig) -> None:
        self.kube = kube
        self.config = config
        self._locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    async def reconcile(self, namespace: str, name: str) -> InvalidSpec | None:
        """Bring the ModelDeployment's children and status up to date; the spec's error, if any."""
        async with self._locks[(namespace, name)]:
            body = await self.kube.get(deployment_ref(namespace, name))
            if body is None:
                return None
            status, error = await self._converge(body)
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
        run_name = spec.model.training_run
        run = await self.kube.get(Ref(naming.API_VERSION_STRING, "TrainingRun", namespace, run_name))
        verdict = judge(run, run_name)
        if not verdict.servable:
            return not_served_status(
                body, verdict.reason, verdict.message, await self.kube.get(servers)
            ), None
        return await self._serve(body, verdict), None

    async def _serve(self, body: dict, verdict: Verdict) -> ModelDeploymentStatus:
        assert verdict.artifact is not None and verdict.model is not None
        plan = plan_serving(body, verdict.artifact, self.config)
        deployment = server_deployment(plan, verdict.model.training_run, verdict.model.sha256)
        service = server_service(plan)
        budget = disruption_budget(plan)
        kopf.adopt([deployment, service, budget], owner=body)
        applied = await self.kube.apply(deployment)
        await self.kube.apply(service)
        if plan.spec.replicas > 1:
            await self.kube.apply(budget)
        else:
            await self.kube.delete(Ref.of(budget))
        return serving_status(
            body, verdict.model, applied, service["metadata"]["name"], service_url(plan), plan.spec.replicas
        )

    @staticmethod
    def _announce(body: dict, previous: dict, status: ModelDeploymentStatus) -> None:
        """An Event when the served model or the readiness verdict changes, not on every status write."""
        before = next((c for c in previous.get("conditions") or [] if c.get("type") == "Ready"), {})
        ready, progressing = status.conditions
        model = status.current_model.training_run if status.current_model else None
        if model and model != (previous.get("currentModel") or {}).get("trainingRun"):
            kopf.event(
                body,
                type="Normal",
                reason="ModelDeployed",
                message=f"rolling out the model of TrainingRun {model}",
            )
        if (before.get("status"), before.get("reason")) != (ready.status, ready.reason):
            stuck = ready.status != "True" and progressing.status != "True"
            kind = "Warning" if stuck else "Normal"
            kopf.event(body, type=kind, reason=ready.reason, message=ready.message)
