"""Putting a chosen model into service: in place (RollingUpdate), or through a canary Deployment beside
the stable one, analysed from the candidate pods' /metrics at every step, then promoted or rolled back.

The state of the canary lives in status.canary, so each reconcile (a rollout tick, a Deployment's status
change, a restart) carries on where the last one stopped. Only children and status are written.
"""

from __future__ import annotations

import asyncio

import aiohttp
import kopf

from crucible.api.modeldeployment import ModelDeploymentSpec
from crucible.api.status import CanaryStatus, ModelDeploymentStatus, ServedModel
from crucible.operator.config import OperatorConfig
from crucible.operator.kube import naming
from crucible.operator.kube.artifacts import parse_artifact_uri
from crucible.operator.kube.client import Kube, Ref
from crucible.operator.kube.conditions import now
from crucible.operator.modeldeployment.manifests import (
    MODEL_RUN,
    disruption_budget,
    server_deployment,
    server_service,
    service_url,
    stable_service,
)
from crucible.operator.modeldeployment.plan import plan_serving
from crucible.operator.modeldeployment.rollout.analysis import Counters, Sample, parse
from crucible.operator.modeldeployment.rollout.canary import PROMOTE, ROLLBACK, scrape_due, split, start, tick
from crucible.operator.modeldeployment.rollout.promotion import APPROVE, approved
from crucible.operator.modeldeployment.rollout.status import (
    awaiting_approval,
    degraded,
    history_with,
    progressing,
    promoted,
    recovered,
    with_promotion,
)
from crucible.operator.modeldeployment.server_pods import ready_address, server_url
from crucible.operator.modeldeployment.status import (
    Track,
    available_replicas,
    restoring_capacity,
    rollout_state,
    serving_status,
    was_ready,
)

SCRAPE_TIMEOUT = 3


def _same(one: ServedModel | None, other: ServedModel | None) -> bool:
    return bool(one and other and (one.training_run, one.sha256) == (other.training_run, other.sha256))


class Rollout:
    def __init__(self, kube: Kube, config: OperatorConfig) -> None:
        self.kube = kube
        self.config = config

    async def serve(
        self, body: dict, spec: ModelDeploymentSpec, target: ServedModel, reason: str
    ) -> ModelDeploymentStatus:
        """Serve `target`: at once when nothing runs yet or it is what runs, else by the rollout strategy."""
        previous = body.get("status") or {}
        current = (
            ServedModel.model_validate(previous["currentModel"]) if previous.get("currentModel") else None
        )
        if current is None or _same(target, current):
            return await self._stable_only(body, target)
        annotations = body["metadata"].get("annotations") or {}
        if (
            spec.model.automatic
            and spec.promotion.policy == "Manual"
            and not approved(annotations, target.training_run)
        ):
            status = await self._stable_only(body, current)
            waiting = awaiting_approval(target.training_run, APPROVE)
            return with_promotion(body, status, candidate=target, extra=[waiting])
        if spec.rollout.strategy == "RollingUpdate":
            status = await self._stable_only(body, target)
            history = history_with(
                previous, "Promoted", target.training_run, current.training_run, reason, "RollingUpdate"
            )
            return with_promotion(
                body, status, history=history, extra=[promoted(target.training_run, reason)]
            )
        return await self._canary(body, spec, current, target)

    async def _apply_track(self, body: dict, model: ServedModel, track: str, replicas: int) -> dict:
        plan = plan_serving(body, parse_artifact_uri(model.uri, "status.currentModel.uri"), self.config)
        deployment = server_deployment(plan, model.training_run, model.sha256, track)
        deployment["spec"]["replicas"] = replicas
        kopf.adopt(deployment, owner=body)
        return await self.kube.apply(deployment)

    async def _front(self, body: dict, model: ServedModel) -> tuple[str, str]:
        """The Service (both tracks behind it) and the disruption budget; (service name, url)."""
        plan = plan_serving(body, parse_artifact_uri(model.uri, "status.currentModel.uri"), self.config)
        service, stable, budget = server_service(plan), stable_service(plan), disruption_budget(plan)
        kopf.adopt([service, stable, budget], owner=body)
        await self.kube.apply(service)
        await self.kube.apply(stable)
        if plan.spec.replicas > 1:
            await self.kube.apply(budget)
        else:
            await self.kube.delete(Ref.of(budget))
        return service["metadata"]["name"], service_url(plan)

    @staticmethod
    def _canary_ref(body: dict) -> Ref:
        metadata = body["metadata"]
        name = naming.deployment_name(metadata["name"], "canary")
        return Ref("apps/v1", "Deployment", metadata["namespace"], name)

    async def _remove_canary(self, body: dict) -> None:
        await self.kube.delete(self._canary_ref(body))

    async def _stable_only(self, body: dict, model: ServedModel) -> ModelDeploymentStatus:
        replicas = body["spec"].get("replicas", 1)
        stable = await self._apply_track(body, model, "stable", replicas)
        service, url = await self._front(body, model)
        if (body.get("status") or {}).get("canary"):
            await self._remove_canary(body)  # a canary whose candidate is no longer wanted
        served = ((body.get("status") or {}).get("currentModel") or {}).get("trainingRun")
        restoring = restoring_capacity(body) and served == model.training_run
        status = serving_status(body, model, stable, service, url, replicas, restoring=restoring)
        return with_promotion(body, status)

    async def _canary(
        self, body: dict, spec: ModelDeploymentSpec, current: ServedModel, target: ServedModel
    ) -> ModelDeploymentStatus:
        previous = body.get("status") or {}
        state = CanaryStatus.model_validate(previous["canary"]) if previous.get("canary") else None
        if state is None or state.candidate != target.training_run:
            state = start(target.training_run, spec.rollout)
        if state.phase == "Promoting":
            return await self._finish_promotion(body, spec, current, target, state)
        stable_replicas, canary_replicas = split(spec.replicas, state.weight)
        canary = await self._apply_track(body, target, "canary", canary_replicas)
        # The stable track gives up replicas only as canary ones become ready: capacity never drops.
        stable_replicas = max(stable_replicas, spec.replicas - available_replicas(canary))
        stable = await self._apply_track(body, current, "stable", stable_replicas)
        service, url = await self._front(body, current)
        ready = rollout_state(stable, stable_replicas)[0] and rollout_state(canary, canary_replicas)[0]
        moment = now()
        sample = None
        if ready and scrape_due(state, spec.rollout, moment):
            sample = await self._scrape(body, target.training_run)
        decision = tick(state, spec.rollout, moment, ready, sample)
        track = Track(canary, canary_replicas, target.training_run)
        status = serving_status(
            body, current, stable, service, url, stable_replicas, track, capacity=spec.replicas
        )
        if decision.action == ROLLBACK:
            return await self._roll_back(body, spec, current, target, decision.reason, decision.message)
        if decision.action == PROMOTE:
            kopf.event(
                body,
                type="Normal",
                reason="CanaryPassed",
                message=f"{target.training_run}: {decision.message}",
            )
            return await self._finish_promotion(body, spec, current, target, decision.state)
        step = decision.state
        message = f"step {step.step}/{step.steps}: {step.weight}% on {target.training_run} ({step.phase})"
        return with_promotion(body, status, candidate=target, canary=step, extra=[progressing(message)])

    async def _finish_promotion(
        self,
        body: dict,
        spec: ModelDeploymentSpec,
        current: ServedModel,
        target: ServedModel,
        state: CanaryStatus,
    ) -> ModelDeploymentStatus:
        """The stable track takes the candidate (maxUnavailable 0); the canary goes once it is ready."""
        stable = await self._apply_track(body, target, "stable", spec.replicas)
        service, url = await self._front(body, target)
        done = rollout_state(stable, spec.replicas)[0]
        if not done:
            # The canary serves beside it until the end, and goes then: it should have no replicas.
            canary = Track(await self.kube.get(self._canary_ref(body)), 0, target.training_run)
            status = serving_status(body, current, stable, service, url, spec.replicas, canary)
            message = f"promoting {target.training_run}: the stable track is rolling to it"
            return with_promotion(body, status, candidate=target, canary=state, extra=[progressing(message)])
        await self._remove_canary(body)
        previous = body.get("status") or {}
        message = (state.last_analysis.message if state.last_analysis else "") or "canary passed"
        history = history_with(
            previous, "Promoted", target.training_run, current.training_run, "CanaryPassed", message
        )
        kopf.event(
            body,
            type="Normal",
            reason="Promoted",
            message=f"{target.training_run} replaced {current.training_run}",
        )
        status = serving_status(body, target, stable, service, url, spec.replicas)
        extra = [promoted(target.training_run, message), recovered(target.training_run)]
        return with_promotion(body, status, history=history, extra=extra)

    async def _roll_back(
        self,
        body: dict,
        spec: ModelDeploymentSpec,
        current: ServedModel,
        target: ServedModel,
        reason: str,
        why: str,
    ) -> ModelDeploymentStatus:
        await self._remove_canary(body)
        stable = await self._apply_track(body, current, "stable", spec.replicas)
        service, url = await self._front(body, current)
        previous = body.get("status") or {}
        rejected = sorted({*(previous.get("rejected") or []), target.training_run})
        history = history_with(previous, "RolledBack", target.training_run, current.training_run, reason, why)
        kopf.event(body, type="Warning", reason="CanaryRolledBack", message=f"{target.training_run}: {why}")
        # Ready stays as it was while the stable track regains the canary's replicas (it serves meanwhile).
        status = serving_status(body, current, stable, service, url, spec.replicas, restoring=was_ready(body))
        extra = [degraded(target.training_run, why)]
        return with_promotion(body, status, history=history, rejected=rejected, extra=extra)

    async def _scrape(self, body: dict, candidate: str) -> Sample | None:
        """The candidate's ready pods' counters, summed; None when any ready pod cannot be read (the
        next tick tries again: a partial sum would look like a counter reset)."""
        metadata = body["metadata"]
        labels = naming.server_labels(metadata["name"], "canary")
        pods = await self.kube.list(Ref("v1", "Pod", metadata["namespace"]), labels)
        ips = [
            ip
            for pod in pods
            if (ip := ready_address(pod))
            and (pod["metadata"].get("annotations") or {}).get(MODEL_RUN) == candidate
        ]
        if not ips:
            return None
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                texts = await asyncio.gather(*(self._read(session, ip) for ip in ips))
        except (aiohttp.ClientError, TimeoutError):
            return None
        return Sample(now(), sum((parse(text) for text in texts), Counters()))

    @staticmethod
    async def _read(session: aiohttp.ClientSession, ip: str) -> str:
        async with session.get(metrics_url(ip)) as response:
            response.raise_for_status()
            return await response.text()


def metrics_url(pod_ip: str) -> str:
    """A server pod's metrics endpoint."""
    return server_url(pod_ip, "/metrics")
