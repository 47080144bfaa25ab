"""A trainer Job deleted before its result was recorded, on the real control plane: its run fails with
JobLost and is never trained again, whether the operator saw the deletion or was stopped meanwhile.
No test kubelet runs here: the trainer pod stays Pending on its Node, so the Job never finishes."""

from __future__ import annotations

import asyncio

from tests.conftest import FAST_SPEC
from tests.operator.e2e import RUNS, status_of
from tests.operator.fake_cluster import eventually
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import RealCluster

JOBS = "batch/v1/jobs"


async def job_deleted(cluster: RealCluster, name: str) -> None:
    """As the TTL controller or `kubectl delete job` does: the Job, then its pods (background)."""
    path = f"/apis/batch/v1/namespaces/{cluster.namespace}/jobs/{name}"
    await cluster.api.call("DELETE", path, {"propagationPolicy": "Background"})
    await eventually(lambda: cluster.get(JOBS, name) is None, 20, f"{name} deleted")


def lost(cluster: RealCluster, name: str) -> dict | None:
    status = status_of(cluster, RUNS, name)
    return status if status.get("phase") == "Failed" else None


def jobs_ever_created(cluster: RealCluster, name: str) -> int:
    return len({body["metadata"]["uid"] for body in cluster.versions(JOBS, name)})


async def test_a_run_whose_job_is_deleted_fails_and_is_not_trained_again(
    cluster: RealCluster, operator: OperatorThread
) -> None:
    await cluster.create_resource("TrainingRun", "run", FAST_SPEC)
    await eventually(lambda: cluster.get(JOBS, "run-train"), 20, "the Job")
    await job_deleted(cluster, "run-train")
    status = await eventually(lambda: lost(cluster, "run"), 20, "the run fails")
    assert status["reason"].startswith("JobLost: the trainer Job run-train was deleted before its result")
    await operator.restart()  # a resumed run whose Job is gone is not started again either
    await asyncio.sleep(2)
    assert jobs_ever_created(cluster, "run-train") == 1
    assert not cluster.objects_of(JOBS)


async def test_a_job_deleted_while_the_operator_was_stopped_fails_its_run_on_resume(
    cluster: RealCluster, operator: OperatorThread
) -> None:
    await cluster.create_resource("TrainingRun", "run", FAST_SPEC)
    await eventually(lambda: status_of(cluster, RUNS, "run").get("jobName"), 20, "the Job recorded")
    await operator.stop()
    await job_deleted(cluster, "run-train")
    await operator.start()
    status = await eventually(lambda: lost(cluster, "run"), 20, "the run fails on resume")
    assert status["reason"].startswith("JobLost:") and status["jobName"] == "run-train"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "JobLost")
    await asyncio.sleep(2)
    assert jobs_ever_created(cluster, "run-train") == 1
