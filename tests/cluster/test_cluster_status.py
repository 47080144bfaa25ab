"""Status written by the operator's own client to the real API server: a field set to None is cleared,
at the top level and inside an object (issue 12, defect 14: canary.waitingSince kept its first value,
so the progress deadline counted from the first wait)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from crucible.api.status import CanaryStatus, ModelDeploymentStatus
from crucible.operator.kube.auth import login_with_file
from crucible.operator.kube.client import Kube, Ref
from tests.operator.real_cluster import RealCluster

STARTED = datetime(2026, 1, 1, tzinfo=UTC)


def canary(**fields: object) -> CanaryStatus:
    return CanaryStatus(
        **{"candidate": "better", "step": 1, "steps": 2, "weight": 50, "phase": "Starting", **fields}
    )


async def test_a_status_field_set_to_none_is_cleared_nested_or_not(
    cluster: RealCluster, operator_identity: Path
) -> None:
    body = await cluster.create_resource("ModelDeployment", "md", {"model": {"trainingRun": "run"}})
    kube = Kube()
    kube.use(login_with_file(str(operator_identity)))  # as the operator, with the chart's permissions
    ref = Ref.of(body)
    try:
        waiting = ModelDeploymentStatus(canary=canary(waiting_since=STARTED), url="http://md-server")
        await kube.patch_status(ref, waiting.to_patch())
        ready = ModelDeploymentStatus(canary=canary(phase="Analysing", step_started_at=STARTED), url=None)
        written = await kube.patch_status(ref, ready.to_patch())
    finally:
        await kube.close()

    assert written is not None
    status = written["status"]
    assert "url" not in status
    assert status["canary"]["phase"] == "Analysing" and status["canary"]["stepStartedAt"]
    assert "waitingSince" not in status["canary"]
