"""Promotion through a canary, end to end on the real control plane with real servers: the real
Deployment, ReplicaSet and EndpointSlice controllers roll the server Deployments, the test kubelet runs
every server pod as a `crucible serve` process on a pod address of its own, a test kube-proxy sends
traffic to the Services' EndpointSlices, and clients send inference requests through them the whole
time. Trainer pods finish at once with a real artifact each (a trained digits model, or a variant of
it) and the metrics given. The operator runs as the chart's ServiceAccount."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from crucible.operator.kube import naming
from tests.conftest import FAST_SPEC
from tests.operator.e2e import DEPLOYMENTS, condition_of, printer_row, run_phase, status_of
from tests.operator.fake_cluster import eventually
from tests.operator.node_agent import NodeAgent
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import RealCluster
from tests.operator.service_proxy import ServiceProxy
from tests.operator.traffic import Traffic, infer_request

LABELS = {"crucible.dev/model": "digits"}
SERVERS = "apps/v1/deployments"
MD = "md"
# Generous for a busy 2-core machine: each server process imports torch before it is ready.
SERVING_TIMEOUT = 120


def _variant(source: Path, target: Path, change: Callable[[dict], None]) -> Path:
    """A copy of an artifact with its weights changed and its model card's sha256 updated to match."""
    import torch

    from crucible.checksums import sha256_of

    shutil.copytree(source, target)
    state = torch.load(target / "model.pt", weights_only=True)
    change(state)
    torch.save(state, target / "model.pt")
    card = json.loads((target / "model.json").read_text())
    card["sha256"] = card["weights"]["sha256"] = sha256_of(target / "model.pt")
    # The ONNX copy was made from the old weights: a variant has none, so its servers run these weights.
    card.pop("onnx", None)
    for copy in ("model.onnx", "model.int8.onnx"):
        (target / copy).unlink(missing_ok=True)
    (target / "model.json").write_text(json.dumps(card))
    return target


def _last_layer(state: dict) -> str:
    return [name for name in state if name.endswith(".weight")][-1]


@pytest.fixture(scope="module")
def models(digits_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """base: the trained digits model; better: the same, nudged (other weights, other sha256);
    broken: NaN in its last layer (every answer is non-finite: the server answers 500); tampered:
    weights that no longer match their card's sha256."""
    root = tmp_path_factory.mktemp("models")

    def nudge(state: dict) -> None:
        state[_last_layer(state)].mul_(1.001)

    def poison(state: dict) -> None:
        state[_last_layer(state)].fill_(float("nan"))

    tampered = _variant(digits_artifact, root / "tampered", nudge)
    with (tampered / "model.pt").open("ab") as weights:
        weights.write(b"\0")  # after the card was written: the server refuses to start (exit 2)
    return {
        "base": digits_artifact,
        "better": _variant(digits_artifact, root / "better", nudge),
        "broken": _variant(digits_artifact, root / "broken", poison),
        "tampered": tampered,
    }


def canary_spec(steps: list[dict], deadline: str = "2m", **analysis: object) -> dict:
    return {
        "model": {"selector": {"matchLabels": LABELS}},
        "replicas": 2,
        "promotion": {"minImprovement": 0.01},
        "rollout": {
            "strategy": "Canary",
            "steps": steps,
            "analysis": {"interval": "2s", "minRequests": 10, "maxLatencyP95Ms": 5000, **analysis},
            "progressDeadline": deadline,
        },
    }


async def train(
    cluster: RealCluster, kubelet: NodeAgent, name: str, accuracy: float, model: Path | None, **result: object
) -> None:
    """A TrainingRun whose Job reports `accuracy` and, when given, `model` as its artifact."""
    job = f"{name}-train"
    kubelet.results[job] = {"metrics": {"accuracy": accuracy}, **result}
    if model is not None:
        kubelet.artifacts[job] = model
    await cluster.create_resource("TrainingRun", name, FAST_SPEC, labels=LABELS)
    await run_phase(cluster, name, ("Succeeded", "Failed"), timeout=60)


def current(cluster: RealCluster) -> str | None:
    return (status_of(cluster, DEPLOYMENTS, MD).get("currentModel") or {}).get("trainingRun")


def ready(cluster: RealCluster) -> bool:
    return condition_of(status_of(cluster, DEPLOYMENTS, MD), "Ready").get("status") == "True"


def created(cluster: RealCluster, name: str) -> bool:
    """Whether a Deployment of this name ever existed."""
    return bool(cluster.versions(SERVERS, name))


def generations_follow_the_spec(cluster: RealCluster, name: str) -> list[int]:
    """The generations a server Deployment went through; each step must come with a changed spec (an
    operator that writes bookkeeping into the metadata of a Deployment moves its generation too, and
    the Deployment controller then never reports having caught up)."""
    versions = cluster.versions(SERVERS, name)
    for before, after in itertools.pairwise(versions):
        if after["metadata"]["generation"] != before["metadata"]["generation"]:
            changed = {
                key
                for key in {
                    *before["metadata"].get("annotations", {}),
                    *after["metadata"].get("annotations", {}),
                }
                if before["metadata"].get("annotations", {}).get(key)
                != after["metadata"].get("annotations", {}).get(key)
            }
            assert after["spec"] != before["spec"], (name, after["metadata"]["generation"], changed)
    return sorted({body["metadata"]["generation"] for body in versions})


async def serve_base(cluster: RealCluster, kubelet: NodeAgent, models: dict[str, Path], spec: dict) -> dict:
    """The ModelDeployment as applied, once it serves the base model."""
    await train(cluster, kubelet, "base", 0.90, models["base"])
    applied = await cluster.create_resource("ModelDeployment", MD, spec)
    await eventually(lambda: current(cluster) == "base" and ready(cluster), SERVING_TIMEOUT, "base served")
    return applied


COLUMNS = ("Ready", "Model", "Candidate", "Canary")


async def watch_canary(
    cluster: RealCluster,
    services: ServiceProxy,
    seen: list[tuple[int, int, str]],
    rows: list[tuple],
    endpoints: list[int],
    at: list[float] | None = None,
    analysed: list[tuple] | None = None,
) -> None:
    """Record each (step, weight, phase) the ModelDeployment's status shows, each distinct row of
    `kubectl get md` (its Ready, Model, Candidate and Canary columns), and how many ready endpoints
    its Service has; in `analysed`, each distinct (Canary, Available) of `kubectl get md -o wide`
    while a step is analysed."""
    while True:
        backends = services.backends(cluster.namespace, naming.service_name(MD))
        endpoints.append(len(backends) if isinstance(backends, list) else 0)
        body = cluster.get(DEPLOYMENTS, MD) or {}
        canary = (body.get("status") or {}).get("canary")
        if canary:
            entry = (canary["step"], canary["weight"], canary["phase"])
            if not seen or seen[-1] != entry:
                seen.append(entry)
                if at is not None:
                    at.append(time.monotonic())
        row = printer_row(body)
        wide = (row["Canary"], row["Available"])
        if analysed is not None and canary and canary["phase"] == "Analysing" and wide not in analysed:
            analysed.append(wide)
        columns = tuple(row[name] for name in COLUMNS)
        if not rows or rows[-1] != columns:
            rows.append(columns)
        await asyncio.sleep(0.05)


async def test_a_better_run_goes_through_every_canary_step_while_clients_never_fail(
    cluster: RealCluster,
    operator: OperatorThread,
    serving_kubelet: NodeAgent,
    services: ServiceProxy,
    models: dict[str, Path],
) -> None:
    spec = canary_spec([{"weight": 50, "pause": "3s"}, {"weight": 100, "pause": "0s"}])
    applied = await serve_base(cluster, serving_kubelet, models, spec)

    def full_capacity() -> bool:  # the EndpointSlice controller lists ready pods a moment after
        backends = services.backends(cluster.namespace, naming.service_name(MD))
        return isinstance(backends, list) and len(backends) == 2

    await eventually(full_capacity, 30, "both base replicas are the Service's endpoints")
    url = await services.url(f"{MD}-server")
    payload = infer_request((3, 16, 16))
    poller = Traffic(url, MD, payload, pause=0.05).start()
    load = Traffic(url, MD, payload, concurrency=2, pause=0.02).start()
    seen: list[tuple[int, int, str]] = []
    at: list[float] = []
    rows: list[tuple] = []
    endpoints: list[int] = []
    wide: list[tuple] = []
    watcher = asyncio.create_task(watch_canary(cluster, services, seen, rows, endpoints, at, wide))
    try:
        # Neither a run that is not better by minImprovement nor one that failed a gate is deployed.
        await train(cluster, serving_kubelet, "worse", 0.905, models["better"])
        failed_gate = {
            "phase": "Failed",
            "reason": "crossValidation: std 0.2 > 0.05",
            "gates": {"crossValidation": {"passed": False, "checks": {}}},
            "artifact": None,
        }
        await train(cluster, serving_kubelet, "failed-gate", 0.99, None, **failed_gate)
        await asyncio.sleep(3)
        assert current(cluster) == "base" and not created(cluster, f"{MD}-canary")
        assert not status_of(cluster, DEPLOYMENTS, MD).get("candidateModel")

        await train(cluster, serving_kubelet, "better", 0.95, models["better"])
        promoted_at = await eventually(
            lambda: current(cluster) == "better" and ready(cluster) and time.monotonic(),
            SERVING_TIMEOUT,
            "better promoted",
        )
        await eventually(lambda: cluster.get(SERVERS, f"{MD}-canary") is None, 30, "canary removed")
        await asyncio.sleep(1)
    finally:
        watcher.cancel()
        await poller.stop()
        await load.stop()

    # Every step, in order, then the promotion. (A step may go back to Starting for a moment on a busy
    # machine, when a replica misses its readiness probe; it is analysed again once all are ready.)
    analysed = [(step, weight) for step, weight, phase in seen if phase == "Analysing"]
    assert [key for key, _ in itertools.groupby(analysed)] == [(1, 50), (2, 100)]
    assert seen[-1][2] == "Promoting"
    # Once a step's replicas are ready, it is analysed for its pause and no longer: the time spent
    # analysing is the steps' pauses (3 s) plus an analysis interval (2 s) per step, and a margin.
    analysing = sum(
        end - start
        for (_, _, phase), start, end in zip(seen, at, at[1:], strict=False)
        if phase == "Analysing"
    )
    assert analysing <= 3 + 2 * 2 + 5, (analysing, list(zip(seen, at, strict=True)))
    # The server Deployments' generations moved only with their spec (the operator's own changes).
    # (The stable track is resized for each step and rolled to the new model at the promotion.)
    assert len(generations_follow_the_spec(cluster, f"{MD}-stable")) <= 1 + 2 + 1
    assert len(generations_follow_the_spec(cluster, f"{MD}-canary")) <= 2
    # What `kubectl get md` showed along the way: the current model, the candidate, its weight.
    assert rows[0] == ("True", "base", None, None)
    assert ("True", "base", "better", 50) in rows and ("True", "base", "better", 100) in rows
    assert rows[-1] == ("True", "better", None, None)
    assert {row[0] for row in rows} == {"True"}  # Ready throughout: serving never stopped
    # Under analysis every replica of both tracks counts: 1 stable and 1 canary at 50%; at 100% the
    # stable track keeps its one replica beside the 2 of the canary.
    assert set(wide) == {(50, 2), (100, 3)}, wide
    status = status_of(cluster, DEPLOYMENTS, MD)
    assert [(h["action"], h["trainingRun"], h["previous"]) for h in status["history"]] == [
        ("Promoted", "better", "base")
    ]
    assert "error rate 0.0000" in status["history"][0]["message"]
    assert status.get("canary") is None and status.get("candidateModel") is None
    # Serving capacity never dropped: the stable track shrank only as canary replicas became ready.
    assert min(endpoints) >= 2, [(count, len(list(run))) for count, run in itertools.groupby(endpoints)]
    # No client ever saw a failure: not through the steps, the promotion, or the canary's removal.
    assert poller.failures == [] and load.failures == []
    base_version, better_version = (
        json.loads((models[name] / "model.json").read_text())["sha256"][:12] for name in ("base", "better")
    )
    assert {base_version, better_version} <= poller.versions() | load.versions()
    assert poller.versions(since=promoted_at + 0.5) == {better_version}
    # GitOps-safe: the operator wrote status and children only, never the spec Git holds.
    after = cluster.get(DEPLOYMENTS, MD)
    assert after["spec"] == applied["spec"]
    assert after["metadata"]["generation"] == applied["metadata"]["generation"]
    stable_pods = serving_kubelet.pods_of(f"{MD}-stable")
    assert len(stable_pods) == 2
    assert {pod.body["metadata"]["annotations"]["crucible.dev/training-run"] for pod in stable_pods} == {
        "better"
    }


async def test_a_canary_that_fails_under_load_is_rolled_back_and_the_stable_model_keeps_serving(
    cluster: RealCluster,
    operator: OperatorThread,
    serving_kubelet: NodeAgent,
    services: ServiceProxy,
    models: dict[str, Path],
) -> None:
    spec = canary_spec([{"weight": 50, "pause": "1m"}, {"weight": 100}], maxErrorRate=0.05)
    await serve_base(cluster, serving_kubelet, models, spec)
    payload = infer_request((3, 16, 16))
    # The poller uses the stable-only Service; the load goes where users' traffic goes.
    poller = Traffic(await services.url(f"{MD}-stable"), MD, payload, pause=0.05).start()
    load = Traffic(await services.url(f"{MD}-server"), MD, payload, concurrency=2, pause=0.02).start()
    rows: list[tuple] = []
    watcher = asyncio.create_task(watch_canary(cluster, services, [], rows, []))
    try:
        await train(cluster, serving_kubelet, "broken", 0.99, models["broken"])
        await eventually(lambda: cluster.get(SERVERS, f"{MD}-canary"), 20, "canary created")
        await eventually(
            lambda: status_of(cluster, DEPLOYMENTS, MD).get("history"), SERVING_TIMEOUT, "canary judged"
        )
        await eventually(lambda: cluster.get(SERVERS, f"{MD}-canary") is None, 30, "canary removed")
        await eventually(
            lambda: len(serving_kubelet.pods_of(f"{MD}-stable")) == 2 and ready(cluster),
            SERVING_TIMEOUT,
            "stable back to 2 replicas",
        )
        rolled_back_at = time.monotonic()
        await asyncio.sleep(4)  # ticks and resyncs come and go: the rejected candidate is not retried
    finally:
        watcher.cancel()
        await poller.stop()
        await load.stop()

    status = status_of(cluster, DEPLOYMENTS, MD)
    (entry,) = status["history"]
    assert (entry["action"], entry["trainingRun"], entry["reason"]) == (
        "RolledBack",
        "broken",
        "AnalysisFailed",
    )
    assert entry["message"].startswith("error rate 1.0000 > 0.05")
    degraded = condition_of(status, "Degraded")
    assert degraded["status"] == "True" and "broken was rolled back: error rate" in degraded["message"]
    assert status["rejected"] == ["broken"] and current(cluster) == "base"
    assert cluster.get(SERVERS, f"{MD}-canary") is None
    # Ready throughout: while the stable track regained the canary's replica after the rollback too.
    assert {row[0] for row in rows} == {"True"}, rows
    # The canary's errors were real 500s under load, and the stable model answered every poll.
    assert any(answer.status == 500 and "non-finite" in answer.detail for answer in load.failures)
    assert len(poller.answers) > 50 and poller.failures == []
    assert [a for a in load.answers if a.at > rolled_back_at + 1 and a.status != 200] == []


async def test_a_canary_that_never_becomes_ready_is_rolled_back_at_its_progress_deadline(
    cluster: RealCluster,
    operator: OperatorThread,
    serving_kubelet: NodeAgent,
    services: ServiceProxy,
    models: dict[str, Path],
) -> None:
    spec = canary_spec([{"weight": 50}], deadline="10s")
    await serve_base(cluster, serving_kubelet, models, spec)
    poller = Traffic(await services.url(f"{MD}-server"), MD, infer_request((3, 16, 16)), pause=0.05).start()
    try:
        await train(cluster, serving_kubelet, "tampered", 0.99, models["tampered"])
        await eventually(lambda: serving_kubelet.pods_of(f"{MD}-canary"), 20, "canary pod started")
        (canary_pod,) = serving_kubelet.pods_of(f"{MD}-canary")
        started = time.monotonic()
        await eventually(lambda: status_of(cluster, DEPLOYMENTS, MD).get("history"), 60, "canary given up on")
        waited = time.monotonic() - started
        await eventually(lambda: cluster.get(SERVERS, f"{MD}-canary") is None, 30, "canary removed")
    finally:
        await poller.stop()

    (entry,) = status_of(cluster, DEPLOYMENTS, MD)["history"]
    assert (entry["action"], entry["trainingRun"], entry["reason"]) == (
        "RolledBack",
        "tampered",
        "ProgressDeadlineExceeded",
    )
    assert entry["message"] == "step 1: the replicas were not all ready within 10s"
    assert waited >= 9
    # The server refused the weights (exit 2) and was restarted with a back-off, never ready.
    assert canary_pod.exits and set(canary_pod.exits) == {2} and not canary_pod.ready
    assert current(cluster) == "base" and poller.failures == [] and len(poller.answers) > 20


@pytest.mark.slow
async def test_an_operator_restarted_mid_canary_carries_on_from_the_status(
    cluster: RealCluster,
    operator: OperatorThread,
    serving_kubelet: NodeAgent,
    services: ServiceProxy,
    models: dict[str, Path],
) -> None:
    spec = canary_spec([{"weight": 50, "pause": "15s"}, {"weight": 100, "pause": "0s"}])
    await serve_base(cluster, serving_kubelet, models, spec)
    url = await services.url(f"{MD}-server")
    poller = Traffic(url, MD, infer_request((3, 16, 16)), concurrency=2, pause=0.02).start()
    try:
        await train(cluster, serving_kubelet, "better", 0.95, models["better"])

        def analysing() -> dict | None:
            canary = status_of(cluster, DEPLOYMENTS, MD).get("canary") or {}
            return canary if canary.get("phase") == "Analysing" and canary.get("sample") else None

        before = await eventually(analysing, SERVING_TIMEOUT, "step 1 under analysis")
        await operator.restart()
        after = await eventually(analysing, 30, "step 1 under analysis after the restart")
        await eventually(lambda: current(cluster) == "better" and ready(cluster), SERVING_TIMEOUT, "promoted")
        await eventually(lambda: cluster.get(SERVERS, f"{MD}-canary") is None, 30, "canary removed")
    finally:
        await poller.stop()

    # The new operator took the step where the old one left it: same step, same start, same window.
    assert after["step"] == before["step"] == 1
    assert after["stepStartedAt"] == before["stepStartedAt"]
    assert after["sample"]["time"] >= before["sample"]["time"]
    canaries = {body["metadata"]["uid"] for body in cluster.versions(SERVERS, f"{MD}-canary")}
    assert len(canaries) == 1  # found again after the restart, not created twice
    history = status_of(cluster, DEPLOYMENTS, MD)["history"]
    assert [(h["action"], h["trainingRun"]) for h in history] == [("Promoted", "better")]
    assert poller.failures == [] and len(poller.answers) > 100
