"""A trainer container killed for memory on the real control plane: the test kubelet reports it
`OOMKilled` (exit 137), the real Job controller applies the trainer Job's podFailurePolicy, and the
run ends Failed / OutOfMemory without a second pod."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import FAST_SPEC
from tests.operator.e2e import condition_of, run_phase
from tests.operator.fake_cluster import eventually
from tests.operator.node_agent import NodeAgent
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import RealCluster

# Long enough that the trainer is still running when the kubelet kills it.
LONG = {**FAST_SPEC, "hyperparameters": {**FAST_SPEC["hyperparameters"], "epochs": 200}}


@pytest.mark.slow
async def test_a_trainer_killed_for_memory_fails_its_run_with_out_of_memory_and_is_not_retried(
    cluster: RealCluster, operator: OperatorThread, kubelet: NodeAgent
) -> None:
    spec = {**LONG, "resources": {"memory": "3Gi"}}
    await cluster.create_resource("TrainingRun", "hungry", spec)
    await eventually(lambda: kubelet.running("hungry-train"), 60, "the trainer pod runs")
    (pod,) = kubelet.running("hungry-train")
    await eventually(lambda: pod.process is not None, 30, "its process started")
    kubelet.oom_kill(pod.name)

    status = await run_phase(cluster, "hungry", ("Succeeded", "Failed"), timeout=60)
    assert status["phase"] == "Failed"
    assert status["reason"].startswith(
        "OutOfMemory: the trainer was killed for exceeding its memory limit of 3Gi"
    )
    assert "spec.resources.memory" in status["reason"]
    ready = condition_of(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "OutOfMemory")
    job = cluster.get("batch/v1/jobs", "hungry-train")
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "PodFailurePolicy")

    # The same limit would be hit again: the Job makes no second pod.
    await asyncio.sleep(3)
    assert kubelet.pods_run == [pod.name]
    assert len(cluster.objects_of("v1/pods")) == 1
