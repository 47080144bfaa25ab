"""A trainer pod stopped mid-run on the real control plane resumes in the pod its Job makes next: the
test kubelet evicts the first pod (node pressure: DisruptionTarget, SIGKILL), the second is deleted
through the API (SIGTERM), and the real Job controller replaces each; every replacement continues
from the checkpoint on the artifacts claim, finished folds are not trained again, and the run
Succeeds."""

from __future__ import annotations

import itertools
import re

import pytest

from tests.conftest import FAST_SPEC
from tests.operator.e2e import RUNS, condition_of, run_phase
from tests.operator.fake_cluster import eventually
from tests.operator.node_agent import NodeAgent
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import RealCluster

CV_EPOCHS = 4
# Four epochs a fold, so a pod stopped after a fold's first epoch is stopped before the fold ends.
SPEC = {
    **FAST_SPEC,
    "gates": {**FAST_SPEC["gates"], "crossValidation": {"folds": 3, "epochs": CV_EPOCHS, "maxStd": 0.1}},
}
FOLD_SCORE = re.compile(r"fold (\d)/3: \w+ (\d\.\d+)")


def trainer_pods(kubelet: NodeAgent) -> list[str]:
    return [name for name in kubelet.pods_run if name.startswith("resumed-train-")]


async def running_pod(kubelet: NodeAgent, number: int) -> str:
    """The name of the Job's `number`th pod (1-based) once its trainer process runs."""
    await eventually(lambda: len(trainer_pods(kubelet)) >= number, 60, f"trainer pod {number}")
    name = trainer_pods(kubelet)[number - 1]
    await eventually(lambda: any(p.name == name and p.process for p in kubelet.running()), 30, name)
    return name


async def logged(kubelet: NodeAgent, pod: str, line: str, timeout: float = 120) -> None:
    await eventually(lambda: f"] {line}" in kubelet.log(pod), timeout, f"{pod} logs {line!r}")


def epoch_lines(log: str) -> list[str]:
    return re.findall(r"\] (fold \d/3 epoch \d/\d)", log)


@pytest.mark.slow
async def test_a_trainer_pod_evicted_or_deleted_mid_run_is_replaced_and_resumes_from_its_checkpoint(
    cluster: RealCluster, operator: OperatorThread, kubelet: NodeAgent
) -> None:
    await cluster.create_resource("TrainingRun", "resumed", SPEC)

    # Fold 1 done and checkpointed, fold 2 one epoch in: the node runs out of memory.
    first = await running_pod(kubelet, 1)
    await logged(kubelet, first, f"fold 2/3 epoch 1/{CV_EPOCHS}")
    kubelet.evict(first)

    second = await running_pod(kubelet, 2)
    await logged(kubelet, second, f"fold 3/3 epoch 1/{CV_EPOCHS}")
    await cluster.delete("v1/pods", second)  # `kubectl delete pod`, a drain without the eviction API

    third = await running_pod(kubelet, 3)
    status = await run_phase(cluster, "resumed", ("Succeeded", "Failed"), timeout=180)
    assert status["phase"] == "Succeeded", status.get("reason")
    assert trainer_pods(kubelet) == [first, second, third]

    logs = [kubelet.log(pod) for pod in (first, second, third)]
    # Each replacement starts from the checkpoint: earlier folds are not trained again, and the running
    # fold continues after the last epoch it finished.
    assert "folds 1-1/3 finished before the restart: not run again" in logs[1]
    assert "folds 1-2/3 finished before the restart: not run again" in logs[2]
    resumed_at = [epoch_lines(log)[0] for log in logs[1:]]
    assert resumed_at[0].startswith("fold 2/3") and resumed_at[0] != f"fold 2/3 epoch 1/{CV_EPOCHS}"
    assert resumed_at[1].startswith("fold 3/3") and resumed_at[1] != f"fold 3/3 epoch 1/{CV_EPOCHS}"
    # Each fold was scored by exactly one pod, and those scores are the run's.
    scored = [(fold, float(score)) for log in logs for fold, score in FOLD_SCORE.findall(log)]
    assert [fold for fold, _ in scored] == ["1", "2", "3"]
    folds = status["gates"]["crossValidation"]["folds"]
    assert [round(score, 4) for score in folds] == [score for _, score in scored]

    # The eviction is a disruption (podFailurePolicy: Ignore); the deletion counts as one failure.
    job = cluster.get("batch/v1/jobs", "resumed-train")
    assert (job["status"].get("failed", 0), job["status"]["succeeded"]) == (1, 1)
    evicted = cluster.get("v1/pods", first)
    assert (evicted["status"]["phase"], evicted["status"]["reason"]) == ("Failed", "Evicted")
    # While its pod was replaced the run kept training: Running, never Pending again.
    phases = [(body.get("status") or {}).get("phase") for body in cluster.versions(RUNS, "resumed")]
    phases = [phase for phase, _ in itertools.groupby(filter(None, phases))]
    assert phases == ["Pending", "Running", "Succeeded"], phases
    said = {
        condition_of(body.get("status") or {}, "Ready").get("reason")
        for body in cluster.versions(RUNS, "resumed")
    }
    assert "TrainerRestarting" in said
