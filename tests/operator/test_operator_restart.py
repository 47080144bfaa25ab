"""Restart safety: an operator stopped halfway, its last write lost, leaves no duplicates behind and
the next one finishes the job. On the emulator on purpose: it holds the operator's chosen write until
the operator is stopped and then drops it, which a real API server cannot be made to do (the lost-Job
cases run on the real control plane: tests/cluster/test_cluster_lost_jobs.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import kmock
import pytest
from kmock._internal.rendering import Request

from tests.conftest import FAST_SPEC
from tests.operator.e2e import run_phase
from tests.operator.fake_cluster import Cluster, eventually
from tests.operator.fake_kubelet import FakeKubelet
from tests.operator.operator_thread import OperatorThread


def patches(plural: str, subresource: str | None) -> Callable[[Request], bool]:
    def matching(request: Request) -> bool:
        return (
            request.method == kmock.method.PATCH
            and request.resource is not None
            and request.resource.plural == plural
            and request.subresource == subresource
        )

    return matching


def creates(plural: str) -> Callable[[Request], bool]:
    return lambda r: (
        r.action == kmock.action.CREATE and r.resource is not None and r.resource.plural == plural
    )


async def restart_while_held(
    cluster: Cluster, operator: OperatorThread, held: Callable[[Request], bool], released: asyncio.Event
) -> None:
    """The operator is stopped while its write hangs; the write never lands; a new operator starts."""
    await eventually(lambda: cluster.held(held), 20, "the operator tries to write")
    await operator.stop()
    released.set()
    cluster.holds.clear()
    await operator.start()


@pytest.mark.parametrize(
    "held",
    [
        pytest.param(patches("trainingruns", None), id="before-the-handler-is-recorded-done"),
        pytest.param(patches("trainingruns", "status"), id="before-the-run-status-is-written"),
    ],
)
async def test_a_restart_mid_run_creates_no_duplicate_job(
    cluster: Cluster, operator: OperatorThread, instant_kubelet: FakeKubelet, held: Callable[[Request], bool]
) -> None:
    released = cluster.hold(held)
    await cluster.create_resource("TrainingRun", "run", FAST_SPEC)
    await eventually(lambda: cluster.get("batch/v1/jobs", "run-train"), 20, "the Job")
    await restart_while_held(cluster, operator, held, released)

    status = await run_phase(cluster, "run", ("Succeeded",), timeout=30)
    assert status["jobName"] == "run-train"
    assert list(cluster.objects_of("batch/v1/jobs")) == ["run-train"]
    assert list(cluster.objects_of("v1/configmaps")) == ["run-spec"]
    assert len(instant_kubelet.pods_run) == 1


async def test_a_restart_mid_rollout_creates_no_duplicate_servers(
    cluster: Cluster, operator: OperatorThread, instant_kubelet: FakeKubelet
) -> None:
    await cluster.create_resource("TrainingRun", "run", FAST_SPEC)
    await run_phase(cluster, "run", ("Succeeded",), timeout=20)
    held = patches("modeldeployments", "status")
    released = cluster.hold(held)
    await cluster.create_resource("ModelDeployment", "md", {"model": {"trainingRun": "run"}, "replicas": 2})
    await eventually(lambda: cluster.get("apps/v1/deployments", "md-stable"), 20, "the Deployment")
    await restart_while_held(cluster, operator, held, released)

    def served() -> bool:
        status = (cluster.get("crucible.dev/v1alpha1/modeldeployments", "md") or {}).get("status") or {}
        return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))

    await eventually(served, 20, "md is served after the restart")
    assert list(cluster.objects_of("apps/v1/deployments")) == ["md-stable"]
    assert sorted(cluster.objects_of("v1/services")) == ["md-server", "md-stable"]  # every track; stable only
    assert list(cluster.objects_of("policy/v1/poddisruptionbudgets")) == ["md-server"]
    assert len([r for r in cluster.requests if creates("deployments")(r)]) == 1  # found, not re-created
