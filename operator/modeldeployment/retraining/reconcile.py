"""The retraining loop (I/O): every `retraining.intervalSeconds`, for each ModelDeployment with
spec.retraining, read its runs and its servers' capture endpoint, let plan.py decide, then create the
run, delete old ones, write status.retraining and post an Event when a trigger fires.

Only status.retraining is written, never the spec (GitOps tools would revert it), and never the rest of
the status (the serving reconciler's own). The capture endpoint is read from one ready server pod of the
ModelDeployment, one of its Service's endpoints, as the canary analysis reads /metrics: the counts live
in the shared capture store, so any replica answers for all of them.
"""

from __future__ import annotations

import logging

import aiohttp
import kopf

from crucible.api.manifest import InvalidSpec
from crucible.api.retraining import RETRAINED_FOR
from crucible.operator.config import OperatorConfig
from crucible.operator.kube import naming
from crucible.operator.kube.client import ApiError, Kube, Ref
from crucible.operator.kube.conditions import now
from crucible.operator.kube.ownership import controller_uid, uid, unchanged
from crucible.operator.modeldeployment.plan import parse_serving_spec
from crucible.operator.modeldeployment.retraining.plan import Capture, Decision, plan_retraining
from crucible.operator.modeldeployment.server_pods import ready_address, server_url

logger = logging.getLogger(__name__)


def capture_url(pod_ip: str, model: str) -> str:
    return server_url(pod_ip, f"/v2/models/{model}/capture")


class Retraining:
    def __init__(self, kube: Kube, config: OperatorConfig) -> None:
        self.kube = kube
        self.config = config

    async def evaluate(self, namespace: str, name: str) -> Decision | None:
        ref = Ref(naming.API_VERSION_STRING, "ModelDeployment", namespace, name)
        body = await self.kube.get(ref)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        try:
            spec = parse_serving_spec(body)
        except InvalidSpec:
            return None  # the serving reconciler reports it in the Ready condition
        policy = spec.retraining
        if policy is None:
            return None
        listed = await self.kube.list(
            Ref(naming.API_VERSION_STRING, "TrainingRun", namespace),
            {RETRAINED_FOR: naming.label_value(name)},
        )
        runs = [run for run in listed if controller_uid(run) == uid(body)]
        needs_capture = policy.min_new_labels is not None or policy.drift is not None
        capture = await self.read_capture(namespace, name) if needs_capture else None
        moment = now()
        decision = plan_retraining(body, policy, runs, capture, moment)
        decision = await self._act(body, decision)
        previous = body.get("status") or {}
        patch = {"retraining": decision.status.to_patch()}
        if not unchanged(previous, patch):
            await self.kube.patch_status(ref, patch)
            before = (previous.get("retraining") or {}).get("message")
            if decision.waiting and decision.waiting != before:
                await self._event(body, "Normal", "RetrainingWaits", decision.waiting)
        return decision

    async def _act(self, body: dict, decision: Decision) -> Decision:
        """Create and delete what the decision says; a run the API server refuses (a template its CEL
        rules reject) is said in the status and an Event instead of being tried blindly every round."""
        namespace = body["metadata"]["namespace"]
        if decision.create is not None:
            try:
                _, created = await self.kube.create(decision.create)
            except ApiError as error:
                if error.status not in (400, 422):
                    raise
                return await self._refused(body, decision, error)
            if created and decision.fired is not None:
                run = decision.create["metadata"]["name"]
                message = f"{decision.fired.reason}: created TrainingRun {run} ({decision.fired.message})"
                await self._event(body, "Normal", "RetrainingTriggered", message)
        for name in decision.delete:
            await self.kube.delete(Ref(naming.API_VERSION_STRING, "TrainingRun", namespace, name))
            await self._event(body, "Normal", "RetrainingRunRemoved", f"TrainingRun {name} (historyLimit)")
        return decision

    async def _refused(self, body: dict, decision: Decision, error: ApiError) -> Decision:
        refused = decision.refused(str(error))
        previous = (body.get("status") or {}).get("retraining") or {}
        if previous.get("message") != refused.status.message:
            await self._event(body, "Warning", "RetrainingRefused", refused.status.message or "")
        return refused

    @staticmethod
    async def _event(body: dict, kind: str, reason: str, message: str) -> None:
        # The step runs in the context kopf indexed the ModelDeployment in (kube/periodic.py), where
        # kopf.event finds its queue, as in the serving reconciler.
        kopf.event(body, type=kind, reason=reason, message=message)

    async def read_capture(self, namespace: str, name: str) -> Capture | str:
        """The capture endpoint's counts, from a ready server pod (stable track first); else why not."""
        pods = await self.kube.list(Ref("v1", "Pod", namespace), naming.server_selector(name))
        ready = sorted(
            (pod for pod in pods if ready_address(pod)),
            key=lambda pod: (pod["metadata"].get("labels") or {}).get(naming.TRACK) != "stable",
        )
        if not ready:
            return "no ready server to ask"
        url = capture_url(ready[0]["status"]["podIP"], name)
        timeout = aiohttp.ClientTimeout(total=self.config.retraining.capture_timeout_seconds)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
                if response.status != 200:
                    return f"GET {url} answered {response.status}"
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            return f"GET {url} failed: {error!r}"
        if not isinstance(document, dict):
            return f"GET {url} answered no JSON object"
        if not document.get("enabled"):
            return "capture is off on the servers (spec.capture.sampleRate is 0)"
        return Capture.from_document(document)
