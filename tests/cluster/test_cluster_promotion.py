"""Automatic promotion end to end on the real control plane (the instant test kubelet finishes each
trainer pod at once with the metrics a test gives it, and reports server pods ready; no server runs)."""

from __future__ import annotations

import asyncio

import pytest

from crucible.compare import encode_outcomes
from tests.conftest import FAST_SPEC
from tests.operator.e2e import DEPLOYMENTS, RUNS, condition_of, run_phase, status_of
from tests.operator.fake_cluster import eventually
from tests.operator.node_agent import NodeAgent
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import RealCluster

LABELS = {"crucible.dev/model": "digits"}
SERVERS = "apps/v1/deployments"


def passed(accuracy: float) -> dict:
    return {"metrics": {"accuracy": accuracy}}


FAILED_GATE = {
    "phase": "Failed",
    "reason": "crossValidation: mean 0.99 but std 0.2 > 0.05",
    "gates": {"debug": {"passed": True, "checks": {}}, "crossValidation": {"passed": False, "checks": {}}},
    "metrics": {"accuracy": 0.99},
    "artifact": None,
}


async def train(
    cluster: RealCluster, kubelet: NodeAgent, name: str, result: dict, phase: str = "Succeeded"
) -> None:
    kubelet.results[f"{name}-train"] = result
    await cluster.create_resource("TrainingRun", name, FAST_SPEC, labels=LABELS)
    await run_phase(cluster, name, (phase,), timeout=60)


def current(cluster: RealCluster) -> str | None:
    return (status_of(cluster, DEPLOYMENTS, "md").get("currentModel") or {}).get("trainingRun")


async def test_only_a_better_run_that_passed_its_gates_is_promoted(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    await train(cluster, instant_kubelet, "base", passed(0.90))
    spec = {
        "model": {"selector": {"matchLabels": LABELS}},
        "promotion": {"minImprovement": 0.01},
        "rollout": {"strategy": "RollingUpdate"},
    }
    created = await cluster.create_resource("ModelDeployment", "md", spec)
    await eventually(lambda: current(cluster) == "base", 20, "base served")

    await train(cluster, instant_kubelet, "worse", passed(0.905))  # better, but not by minImprovement
    await train(cluster, instant_kubelet, "failed-gate", FAILED_GATE, phase="Failed")
    await asyncio.sleep(1)
    assert current(cluster) == "base"
    annotations = cluster.get(SERVERS, "md-stable")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["crucible.dev/training-run"] == "base"

    await train(cluster, instant_kubelet, "better", passed(0.95))
    await eventually(lambda: current(cluster) == "better", 20, "better promoted")
    status = status_of(cluster, DEPLOYMENTS, "md")
    assert [(h["action"], h["trainingRun"], h["previous"]) for h in status["history"]] == [
        ("Promoted", "better", "base")
    ]
    assert condition_of(status, "Promoted")["status"] == "True"
    # The operator wrote status and children only: the spec Git holds is untouched.
    after = cluster.get(DEPLOYMENTS, "md")
    assert after["spec"] == created["spec"]
    assert after["metadata"]["generation"] == created["metadata"]["generation"]


async def test_manual_policy_waits_for_an_approval_annotation(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    await train(cluster, instant_kubelet, "base", passed(0.90))
    spec = {
        "model": {"selector": {"matchLabels": LABELS}},
        "promotion": {"policy": "Manual"},
        "rollout": {"strategy": "RollingUpdate"},
    }
    await cluster.create_resource("ModelDeployment", "md", spec)
    await eventually(
        lambda: current(cluster) == "base", 20, "the first model is served"
    )  # nothing to replace
    await train(cluster, instant_kubelet, "better", passed(0.95))

    def waiting() -> bool:
        status = status_of(cluster, DEPLOYMENTS, "md")
        return (status.get("candidateModel") or {}).get("trainingRun") == "better"

    await eventually(waiting, 20, "candidate shown")
    status = status_of(cluster, DEPLOYMENTS, "md")
    assert current(cluster) == "base"
    assert condition_of(status, "Promoted")["reason"] == "AwaitingApproval"

    body = cluster.get(DEPLOYMENTS, "md")
    await cluster.patch(
        "ModelDeployment", "md", {"metadata": {"annotations": {"crucible.dev/approve": "better"}}}
    )
    await eventually(lambda: current(cluster) == "better", 20, "approved candidate promoted")
    assert cluster.get(DEPLOYMENTS, "md")["metadata"]["generation"] == body["metadata"]["generation"]


def scored(right: int, of: int = 100) -> dict:
    """A result whose model got the first `right` of `of` held-out images right."""
    labels = [1] * of
    return {
        "metrics": {"accuracy": right / of},
        "outcomes": encode_outcomes(labels, [1] * right + [0] * (of - right)),
    }


@pytest.mark.slow
async def test_require_significance_holds_back_a_lead_within_chance(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    await train(cluster, instant_kubelet, "base", scored(80))
    spec = {
        "model": {"selector": {"matchLabels": LABELS}},
        "promotion": {"minImprovement": 0.01, "requireSignificance": True, "alpha": 0.05},
        "rollout": {"strategy": "RollingUpdate"},
    }
    await cluster.create_resource("ModelDeployment", "md", spec)
    await eventually(lambda: current(cluster) == "base", 20, "base served")
    run = status_of(cluster, RUNS, "base")
    assert run["outcomes"]["images"] == 100, "the outcome bits reach the run's status"

    # Right on 4 more images than base (and on none it missed): +4 points, p = 0.125.
    await train(cluster, instant_kubelet, "lucky", scored(84))

    def held_back() -> bool:
        return (
            condition_of(status_of(cluster, DEPLOYMENTS, "md"), "Promoted").get("reason") == "NotSignificant"
        )

    await eventually(held_back, 20, "the candidate held back as NotSignificant")
    promoted = condition_of(status_of(cluster, DEPLOYMENTS, "md"), "Promoted")
    assert promoted["status"] == "False" and current(cluster) == "base"
    assert (
        "4 right only by lucky, 0 right only by base, p = 0.125, not below alpha 0.05" in promoted["message"]
    )

    await train(cluster, instant_kubelet, "clear", scored(95))  # 15 wins, p = 6e-05
    await eventually(lambda: current(cluster) == "clear", 20, "the significant candidate promoted")
    assert condition_of(status_of(cluster, DEPLOYMENTS, "md"), "Promoted")["status"] == "True"
