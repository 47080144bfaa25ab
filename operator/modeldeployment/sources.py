"""Which model a ModelDeployment asks for right now: its pinned TrainingRun, its TuningJob's best trial,
or the best TrainingRun its selector matches (read from the API; the decisions are in
rollout/promotion.py)."""

from __future__ import annotations

from dataclasses import dataclass

from crucible.api.modeldeployment import ModelDeploymentSpec
from crucible.api.status import ServedModel
from crucible.operator.kube import naming
from crucible.operator.kube.client import Kube, Ref
from crucible.operator.modeldeployment.config import PromotionConfig
from crucible.operator.modeldeployment.rollout.promotion import choose, metric_of, selects
from crucible.operator.modeldeployment.status import judge


@dataclass(frozen=True)
class Wanted:
    """The model to serve (None: keep what runs, or nothing), and why, for status."""

    model: ServedModel | None
    reason: str
    message: str
    # A pinned run that cannot be served is reported as not Ready; an automatic source with nothing
    # better simply keeps the current model.
    pinned: bool = False


def _run_ref(namespace: str, name: str | None = None) -> Ref:
    return Ref(naming.API_VERSION_STRING, "TrainingRun", namespace, name)


async def wanted(
    kube: Kube,
    namespace: str,
    spec: ModelDeploymentSpec,
    current: ServedModel | None,
    rejected: list[str],
    platform: PromotionConfig,
) -> Wanted:
    source = spec.model
    if source.training_run is not None:
        name = source.training_run
        if name in rejected and (current is None or current.training_run != name):
            return Wanted(None, "Rejected", f"TrainingRun {name} was rolled back and is not retried", True)
        verdict = judge(await kube.get(_run_ref(namespace, name)), name)
        return Wanted(verdict.model, verdict.reason, verdict.message, True)
    if source.tuning_job is not None:
        tuning = await kube.get(Ref(naming.API_VERSION_STRING, "TuningJob", namespace, source.tuning_job))
        if tuning is None:
            return Wanted(None, "TuningJobNotFound", f"TuningJob {source.tuning_job} does not exist")
        best = (((tuning.get("status") or {}).get("bestTrial")) or {}).get("trainingRun")
        run = await kube.get(_run_ref(namespace, best)) if best else None
        runs = [run] if run else []
    else:
        assert source.selector is not None
        found = await kube.list(_run_ref(namespace), source.selector.match_labels)
        runs = [item for item in found if selects(source.selector, item["metadata"].get("labels"))]
    current_name = current.training_run if current else None
    current_run = await kube.get(_run_ref(namespace, current_name)) if current_name else None
    current_value = metric_of(current_run, spec.promotion.metric)
    current_status = (current_run or {}).get("status") or {}
    choice = choose(
        runs,
        current_name,
        current_value,
        spec.promotion,
        platform,
        rejected,
        current_status.get("fingerprints"),
        current_status.get("outcomes"),
    )
    if choice.run is None or choice.verdict is None:
        return Wanted(current, choice.reason, choice.message)
    return Wanted(choice.verdict.model, choice.reason, choice.message)
