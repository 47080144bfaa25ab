"""TuningJob end to end on the real control plane: the operator (as the chart's ServiceAccount, with its
study proxy on a free local port), and every trial's trainer pod run for real by the test kubelet.

The emulator used to hold the operator's create of trial 2 and drop it as the operator stopped; a real
API server cannot drop a write, so the restart here happens while trials run, wherever the search is."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
import yaml

from tests.cluster.operator_config import local_study, write_operator_config
from tests.conftest import FAST_SPEC
from tests.operator.e2e import DEPLOYMENTS, condition_of, status_of
from tests.operator.fake_cluster import eventually
from tests.operator.node_agent import NodeAgent
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import RealCluster

JOBS = "crucible.dev/v1alpha1/tuningjobs"
RUNS = "crucible.dev/v1alpha1/trainingruns"
# A few seconds a trial: no cross-validation; the debug and overfitting gates still apply.
TEMPLATE = {**FAST_SPEC, "gates": {**FAST_SPEC["gates"], "crossValidation": {"enabled": False}}}
SEARCH = {
    "template": TEMPLATE,
    "searchSpace": {
        "hyperparameters.learningRate": {"type": "float", "low": 0.003, "high": 0.05, "log": True}
    },
    "objective": {"metric": "accuracy"},
    "sampler": {"type": "random", "seed": 3},
    "pruner": {"type": "none"},
    "maxTrials": 4,
    "parallelism": 2,
}


@pytest.fixture
def operator_config(tmp_path: Path) -> Path:
    """Studies in a temporary folder; the proxy on this machine, where the test kubelet's trainers run."""
    return write_operator_config(tmp_path, tuning=local_study(tmp_path))


def running_trials(cluster: RealCluster) -> int:
    return sum(
        1
        for run in cluster.objects_of(RUNS).values()
        if (run.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    )


@contextlib.asynccontextmanager
async def watching_concurrency(cluster: RealCluster):  # type: ignore[no-untyped-def]
    """The most trials seen unfinished at once, sampled from the namespace's objects while the body runs."""
    seen = [0]

    async def sample() -> None:
        while True:
            seen[0] = max(seen[0], running_trials(cluster))
            await asyncio.sleep(0.05)

    task = asyncio.create_task(sample())
    try:
        yield seen
    finally:
        task.cancel()


@pytest.mark.slow
async def test_a_search_of_four_trials_two_at_a_time_survives_a_restart(
    cluster: RealCluster, operator: OperatorThread, kubelet: NodeAgent
) -> None:
    # A ModelDeployment serving the search's best trial, whichever it turns out to be.
    serving = {"model": {"tuningJob": "tj"}, "promotion": {"minImprovement": 0}}
    await cluster.create_resource("ModelDeployment", "best", serving)
    async with watching_concurrency(cluster) as most_running:
        await cluster.create_resource("TuningJob", "tj", SEARCH)
        # Stopped while the first trials train; the next operator carries on from the study.
        await eventually(lambda: cluster.get(RUNS, "tj-trial-001"), 120, "two trials running")
        await operator.restart()
        await eventually(
            lambda: status_of(cluster, JOBS, "tj").get("phase") in ("Succeeded", "Failed"),
            150,
            "the search ends",
        )

    status = status_of(cluster, JOBS, "tj")
    assert status["phase"] == "Succeeded", status
    runs = cluster.objects_of(RUNS)
    assert sorted(runs) == [f"tj-trial-{n:03d}" for n in range(4)]
    assert most_running[0] <= 2
    assert len(kubelet.pods_run) == 4  # one trainer per trial: none duplicated, none lost
    assert status["trialCounts"] == {"complete": 4, "pruned": 0, "failed": 0, "running": 0, "waiting": 0}
    assert status["progress"] == "4/4"
    uid = cluster.get(JOBS, "tj")["metadata"]["uid"]
    assert status["studyName"] == f"{cluster.namespace}.tj.{uid}"

    accuracies = {name: run["status"]["metrics"]["accuracy"] for name, run in runs.items()}
    best = status["bestTrial"]
    assert best["value"] == pytest.approx(max(accuracies.values()), abs=1e-6)
    assert accuracies[best["trainingRun"]] == pytest.approx(best["value"], abs=1e-6)
    assert set(best["params"]) == {"hyperparameters.learningRate"}
    assert status["baselineTrial"]["params"] == {"hyperparameters.learningRate": 0.01}  # the template's

    for number, name in enumerate(sorted(runs)):
        run = runs[name]
        assert run["metadata"]["labels"]["crucible.dev/tuning-job"] == "tj"
        assert run["metadata"]["labels"]["crucible.dev/trial-number"] == str(number)
        owner = run["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("TuningJob", uid, True)
        command = cluster.get("batch/v1/jobs", f"{name}-train")["spec"]["template"]["spec"]["containers"][0][
            "command"
        ]
        assert command[command.index("--trial-number") + 1] == str(number)
        assert command[command.index("--study-name") + 1] == status["studyName"]
    assert condition_of(status, "Ready")["status"] == "True"
    assert condition_of(status, "Progressing")["status"] == "False"
    pruning = condition_of(status, "PruningAvailable")  # every trial reached the study proxy
    assert (pruning["status"], pruning["reason"]) == ("True", "StudyReachable")
    assert all(run["status"]["pruning"] == {"available": True} for run in runs.values())

    def served() -> str | None:
        return (status_of(cluster, DEPLOYMENTS, "best").get("currentModel") or {}).get("trainingRun")

    await eventually(lambda: served() == best["trainingRun"], 30, "the best trial is served")
    template = cluster.get("apps/v1/deployments", "best-stable")["spec"]["template"]
    assert template["metadata"]["annotations"]["crucible.dev/training-run"] == best["trainingRun"]

    def completion_event() -> bool:
        return any(event["reason"] == "SearchSucceeded" for event in cluster.objects_of("v1/events").values())

    await eventually(completion_event, 10, "a SearchSucceeded Event")


async def test_an_invalid_tuning_job_is_refused_naming_the_field(
    cluster: RealCluster, operator: OperatorThread
) -> None:
    spec = {**SEARCH, "storage": {"type": "sqlite", "volumeClaim": "mine"}}
    await cluster.create_resource("TuningJob", "bad", spec)
    await eventually(lambda: status_of(cluster, JOBS, "bad").get("phase") == "Failed", 20, "bad is refused")

    status = status_of(cluster, JOBS, "bad")
    ready = condition_of(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith("spec.storage:")
    assert status["reason"].startswith("InvalidSpec: spec.storage")
    await asyncio.sleep(1)
    assert not cluster.objects_of(RUNS)


@pytest.mark.slow
async def test_trials_that_cannot_reach_the_study_say_so_and_the_tuning_job_too(
    cluster: RealCluster, operator: OperatorThread, kubelet: NodeAgent, operator_config: Path
) -> None:
    """Issue 12, defect 17: a study proxy address trial pods cannot reach (here one where nothing
    listens) costs the search its pruning, not its trials; the trial's status and the TuningJob's
    PruningAvailable condition say so, with the address. About 30 s: the trainer waits that long for
    the proxy before training on."""
    config = yaml.safe_load(operator_config.read_text())
    config["tuning"]["proxyAddress"] = "127.0.0.2"  # the proxy listens on 127.0.0.1 only
    operator_config.write_text(yaml.safe_dump(config))
    await operator.restart()
    address = f"grpc://127.0.0.2:{config['tuning']['proxyPort']}"
    await cluster.create_resource("TuningJob", "lost", {**SEARCH, "maxTrials": 1, "parallelism": 1})
    await eventually(
        lambda: status_of(cluster, JOBS, "lost").get("phase") in ("Succeeded", "Failed"),
        150,
        "the search ends",
    )

    status = status_of(cluster, JOBS, "lost")
    assert status["phase"] == "Succeeded", status  # the trial trained on, unpruned
    trial = status_of(cluster, RUNS, "lost-trial-000")
    assert trial["pruning"]["available"] is False
    assert trial["pruning"]["reason"].startswith(f"the study proxy {address} could not be reached at start")
    pruning = condition_of(status, "PruningAvailable")
    assert (pruning["status"], pruning["reason"]) == ("False", "StudyUnreachable")
    assert pruning["message"].startswith(
        f"1 of 1 trials trained without pruning: their pods could not reach the study proxy at {address}"
    )

    def warned() -> bool:
        return any(e["reason"] == "StudyUnreachable" for e in cluster.objects_of("v1/events").values())

    await eventually(warned, 10, "a StudyUnreachable Event")
