"""spec.retraining on the real control plane: the operator (as the chart's ServiceAccount) reads the capture
endpoint of the ModelDeployment's ready server, creates TrainingRuns from the template when enough new
labels arrived, waits while one runs, removes runs beyond historyLimit, and says all of it in
status.retraining and Events (the server pod is reported ready by the instant test kubelet, and the test
answers its capture endpoint on the pod's address, as `crucible serve --capture` does). Then the whole
loop with real trainers and real servers: capture, labels, the trigger, a retrain on the original plus
the labelled captures, its gates, the canary, and a model better on the shifted data."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from crucible.operator.kube import naming
from tests.cluster.operator_config import ARTIFACTS_CLAIM, write_operator_config
from tests.conftest import FAST_SPEC
from tests.operator.e2e import DEPLOYMENTS, condition_of, run_phase, status_of
from tests.operator.fake_cluster import eventually
from tests.operator.node_agent import NodeAgent
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import RealCluster
from tests.operator.service_proxy import ServiceProxy
from tests.operator.traffic import Traffic, infer_request

LABELS = {"crucible.dev/model": "digits"}
RUNS = "crucible.dev/v1alpha1/trainingruns"
SERVERS = "apps/v1/deployments"
MD = "md"


@pytest.fixture
def operator_config(tmp_path: Path) -> Path:
    """The chart's configuration, with policies evaluated every second."""
    return write_operator_config(tmp_path, retraining={"intervalSeconds": 1})


class CaptureEndpoint:
    """GET /v2/models/md/capture as a server with capture on answers it; `labelled` is set by the test."""

    def __init__(self) -> None:
        self.labelled = 0
        self.window = 0  # predictions in the drift window
        self.divergence = 0.0
        self.reads = 0

    async def answer(self, request: web.Request) -> web.Response:
        self.reads += 1
        assert request.match_info["name"] == MD
        return web.json_response(
            {
                "enabled": True,
                "sampleRate": 1.0,
                "captured": self.labelled,
                "labelled": self.labelled,
                "labelledByClass": {},
                "lastLabelAt": None,
                "drift": {
                    "window": self.window,
                    "predictedShare": {},
                    "trainingShare": {},
                    "divergence": self.divergence,
                    "meanTopScore": 0.5,
                },
            }
        )


@asynccontextmanager
async def serve_capture(ip: str, endpoint: CaptureEndpoint) -> AsyncIterator[None]:
    app = web.Application()
    app.router.add_get("/v2/models/{name}/capture", endpoint.answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, ip, 8080).start()
    try:
        yield
    finally:
        await runner.cleanup()


def retraining_runs(cluster: RealCluster) -> list[str]:
    return sorted(name for name in cluster.objects_of(RUNS) if name.startswith(f"{MD}-retrain-"))


def retraining(cluster: RealCluster) -> dict:
    return status_of(cluster, DEPLOYMENTS, MD).get("retraining") or {}


def events(cluster: RealCluster, reason: str) -> list[str]:
    return [
        event["message"]
        for event in cluster.objects_of("v1/events").values()
        if event["involvedObject"]["name"] == MD and event["reason"] == reason
    ]


@pytest.mark.slow
async def test_new_labels_start_retraining_runs_one_at_a_time_and_old_ones_are_removed(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    instant_kubelet.results["base-train"] = {"metrics": {"accuracy": 0.9}}
    await cluster.create_resource("TrainingRun", "base", FAST_SPEC, labels=LABELS)
    await run_phase(cluster, "base", ("Succeeded",))
    # Retrained runs do worse here, so the served model (and its server pod) stays the base one.
    for index in (1, 2, 3):
        instant_kubelet.results[f"{MD}-retrain-{index}-train"] = {"metrics": {"accuracy": 0.5}}
    spec = {
        "model": {"selector": {"matchLabels": LABELS}},
        "rollout": {"strategy": "RollingUpdate"},
        "retraining": {
            "minNewLabels": 50,
            "historyLimit": 1,
            "template": {"metadata": {"labels": LABELS}, "spec": FAST_SPEC},
        },
    }
    applied = await cluster.create_resource("ModelDeployment", MD, spec)
    await eventually(lambda: instant_kubelet.pods_of(f"{MD}-stable"), 30, "the server pod")
    (pod,) = instant_kubelet.pods_of(f"{MD}-stable")
    endpoint = CaptureEndpoint()
    endpoint.labelled = 20
    async with serve_capture(pod.ip, endpoint):
        await eventually(
            lambda: retraining(cluster).get("message") == "no trigger fired: 20 new labels of 50 needed",
            30,
            "the policy reads 20 labels",
        )
        assert retraining_runs(cluster) == []

        endpoint.labelled = 60
        await eventually(lambda: retraining_runs(cluster) == [f"{MD}-retrain-1"], 30, "a run for 60 labels")
        created = cluster.get(RUNS, f"{MD}-retrain-1")
        assert created["metadata"]["labels"]["crucible.dev/retrained-for"] == MD
        assert created["metadata"]["labels"]["crucible.dev/model"] == "digits"
        (owner,) = created["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "ModelDeployment",
            MD,
            applied["metadata"]["uid"],
        )
        await run_phase(cluster, f"{MD}-retrain-1", ("Succeeded",))
        await eventually(lambda: retraining(cluster).get("lastRun") == f"{MD}-retrain-1", 30, "status")
        status = retraining(cluster)
        assert status["lastTrigger"]["reason"] == "NewLabels"
        assert status["labelsAtLastRun"] == 60
        said = f"NewLabels: created TrainingRun {MD}-retrain-1 (60 new labels (minNewLabels 50))"
        await eventually(lambda: events(cluster, "RetrainingTriggered") == [said], 10, "the trigger's Event")

        endpoint.labelled = 109  # 49 new: nothing
        await eventually(
            lambda: retraining(cluster).get("message") == "no trigger fired: 49 new labels of 50 needed",
            30,
            "the policy reads 49 new labels",
        )
        endpoint.labelled = 110
        await eventually(lambda: cluster.get(RUNS, f"{MD}-retrain-2"), 30, "a run for 50 more labels")
        await run_phase(cluster, f"{MD}-retrain-2", ("Succeeded",))
        # historyLimit 1: the older finished run goes (its artifacts stay where it wrote them).
        await eventually(lambda: retraining_runs(cluster) == [f"{MD}-retrain-2"], 30, "retrain-1 removed")
        await eventually(
            lambda: events(cluster, "RetrainingRunRemoved") == [f"TrainingRun {MD}-retrain-1 (historyLimit)"],
            10,
            "the removal said in an Event",
        )
    assert endpoint.reads >= 4
    assert status_of(cluster, DEPLOYMENTS, MD)["currentModel"]["trainingRun"] == "base"
    # GitOps-safe: the operator wrote status and children only, never the spec Git holds.
    after = cluster.get(DEPLOYMENTS, MD)
    assert after["spec"] == applied["spec"]
    assert after["metadata"]["generation"] == applied["metadata"]["generation"]


@pytest.mark.slow
async def test_drift_starts_one_retraining_run_per_served_model(
    cluster: RealCluster, operator: OperatorThread, instant_kubelet: NodeAgent
) -> None:
    instant_kubelet.results["base-train"] = {"metrics": {"accuracy": 0.9}}
    instant_kubelet.results[f"{MD}-retrain-1-train"] = {"metrics": {"accuracy": 0.5}}
    await cluster.create_resource("TrainingRun", "base", FAST_SPEC, labels=LABELS)
    await run_phase(cluster, "base", ("Succeeded",))
    spec = {
        "model": {"selector": {"matchLabels": LABELS}},
        "retraining": {
            "drift": {"threshold": 0.3, "minSamples": 100},
            "template": {"metadata": {"labels": LABELS}, "spec": FAST_SPEC},
        },
    }
    await cluster.create_resource("ModelDeployment", MD, spec)
    await eventually(lambda: instant_kubelet.pods_of(f"{MD}-stable"), 30, "the server pod")
    (pod,) = instant_kubelet.pods_of(f"{MD}-stable")
    endpoint = CaptureEndpoint()
    endpoint.window, endpoint.divergence = 40, 0.6
    async with serve_capture(pod.ip, endpoint):
        waiting = "no trigger fired: drift: 40 predictions in the window of 100 needed"
        await eventually(lambda: retraining(cluster).get("message") == waiting, 30, "too few predictions")
        endpoint.window, endpoint.divergence = 500, 0.1
        calm = "no trigger fired: drift: divergence 0.100 < 0.3"
        await eventually(lambda: retraining(cluster).get("message") == calm, 30, "no drift")
        endpoint.divergence = 0.45
        await eventually(lambda: cluster.get(RUNS, f"{MD}-retrain-1"), 30, "a run for the drift")
        await run_phase(cluster, f"{MD}-retrain-1", ("Succeeded",))
        # Still drifting, and the served model is still base: retraining it again would not help.
        again = "no trigger fired: drift: divergence 0.450 >= 0.3, already retrained for base"
        await eventually(lambda: retraining(cluster).get("message") == again, 30, "drift once per model")
    status = retraining(cluster)
    assert (status["lastTrigger"]["reason"], status["driftTriggeredFor"]) == ("Drift", "base")
    assert retraining_runs(cluster) == [f"{MD}-retrain-1"]


# -- the whole loop, with real trainers and real servers

BASE_SPEC = {**FAST_SPEC, "hyperparameters": {**FAST_SPEC["hyperparameters"], "epochs": 2}}
CAPTURE = f"pvc://{ARTIFACTS_CLAIM}/capture/{MD}"
# The retraining template: the same digits (so the same held-out split: comparable for promotion),
# trained longer, plus what the servers captured and people labelled.
RETRAIN_SPEC = {
    **FAST_SPEC,
    "dataset": {**FAST_SPEC["dataset"], "sources": [{"name": "captured", "uri": f"{CAPTURE}/labelled"}]},
}
LOOP_TIMEOUT = 900  # two real trainings and a canary on a busy 2-core machine
FEEDBACK_IMAGES = 300


def shifted_digits() -> tuple[list[bytes], list[str], list[bytes], list[str]]:
    """scikit-learn's digits with inverted colours (dark ink on a light background; the bundled ones the
    models train on are bright on dark), as PNG files: 300 for clients to send and label, and a fixed
    test set of 300 others."""
    import io

    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = 255 - np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    files = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image, mode="L").save(buffer, format="PNG")
        files.append(buffer.getvalue())
    labels = [str(target) for target in digits.target]
    sent = slice(0, FEEDBACK_IMAGES)
    test = slice(len(files) - 300, len(files))
    return files[sent], labels[sent], files[test], labels[test]


async def predict(session: aiohttp.ClientSession, url: str, png: bytes) -> dict:
    form = aiohttp.FormData()
    form.add_field("files", png, filename="digit.png", content_type="image/png")
    async with session.post(f"{url}/predict", data=form) as response:
        assert response.status == 200, (response.status, await response.text())
        assert response.headers.get("X-Request-Id")
        return await response.json()


async def accuracy_on(
    session: aiohttp.ClientSession, url: str, files: list[bytes], labels: list[str]
) -> tuple[float, set[str]]:
    """Top-1 accuracy of what the Service answers on these files, and the model versions that answered."""
    answers = await asyncio.gather(*(predict(session, url, png) for png in files))
    right = sum(
        answer["predictions"][0]["label"] == label for answer, label in zip(answers, labels, strict=True)
    )
    return right / len(files), {answer["model_version"] for answer in answers}


async def send_and_label(
    session: aiohttp.ClientSession, url: str, files: list[bytes], labels: list[str]
) -> None:
    """A client: each image predicted through the Service, then its true label posted as feedback."""
    semaphore = asyncio.Semaphore(4)

    async def one(png: bytes, label: str) -> None:
        async with semaphore:
            request_id = (await predict(session, url, png))["predictions"][0]["id"]
            async with session.post(
                f"{url}/v2/models/{MD}/feedback", json={"id": request_id, "label": label}
            ) as response:
                assert response.status == 200, (response.status, await response.text())

    await asyncio.gather(*(one(png, label) for png, label in zip(files, labels, strict=True)))


@pytest.mark.slow
async def test_labelled_captures_retrain_a_model_that_is_promoted_and_better_on_the_shifted_data(
    cluster: RealCluster,
    operator: OperatorThread,
    training_and_serving_kubelet: NodeAgent,
    services: ServiceProxy,
) -> None:
    kubelet = training_and_serving_kubelet
    sent, sent_labels, test, test_labels = shifted_digits()
    await cluster.create_resource("TrainingRun", "base", BASE_SPEC, labels=LABELS)
    base = await run_phase(cluster, "base", ("Succeeded", "Failed"), timeout=LOOP_TIMEOUT)
    assert base["phase"] == "Succeeded", base.get("reason")
    spec = {
        "model": {"selector": {"matchLabels": LABELS}},
        "capture": {"sampleRate": 1, "destination": CAPTURE},
        "rollout": {
            "strategy": "Canary",
            "steps": [{"weight": 100, "pause": "2s"}],
            "analysis": {"interval": "2s", "minRequests": 10, "maxLatencyP95Ms": 5000},
            "progressDeadline": "5m",
        },
        "retraining": {
            "minNewLabels": FEEDBACK_IMAGES,
            "template": {"metadata": {"labels": LABELS}, "spec": RETRAIN_SPEC},
        },
    }
    applied = await cluster.create_resource("ModelDeployment", MD, spec)

    def served(run: str) -> bool:
        status = status_of(cluster, DEPLOYMENTS, MD)
        current = (status.get("currentModel") or {}).get("trainingRun")
        return current == run and condition_of(status, "Ready").get("status") == "True"

    await eventually(lambda: served("base"), 300, "the base model served")
    url = await services.url(naming.service_name(MD))
    # Clients keep using the model the whole time: no request may fail, through the canary too.
    poller = Traffic(url, MD, infer_request((3, 16, 16)), pause=0.1).start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            before, before_versions = await accuracy_on(session, url, test, test_labels)
            await send_and_label(session, url, sent, sent_labels)
            await eventually(lambda: cluster.get(RUNS, f"{MD}-retrain-1"), 60, "minNewLabels fired")
            trigger = await eventually(
                lambda: retraining(cluster).get("lastTrigger"), 30, "the trigger in status"
            )
            retrained = await run_phase(
                cluster, f"{MD}-retrain-1", ("Succeeded", "Failed"), timeout=LOOP_TIMEOUT
            )
            assert retrained["phase"] == "Succeeded", retrained.get("reason")
            await eventually(lambda: served(f"{MD}-retrain-1"), LOOP_TIMEOUT, "the retrained model promoted")
            await eventually(lambda: cluster.get(SERVERS, f"{MD}-canary") is None, 60, "canary removed")
            await eventually(
                lambda: (
                    {
                        pod.body["metadata"]["annotations"]["crucible.dev/training-run"]
                        for pod in kubelet.pods_of(f"{MD}-stable")
                    }
                    == {f"{MD}-retrain-1"}
                ),
                120,
                "only the promoted model serves",
            )
            after, after_versions = await accuracy_on(session, url, test, test_labels)
    finally:
        await poller.stop()

    artifact = retrained["artifact"]["uri"].removeprefix(f"pvc://{ARTIFACTS_CLAIM}/")
    card = json.loads((kubelet.volume(ARTIFACTS_CLAIM) / artifact / "model.json").read_text())
    trained_on = {source["name"]: source["images"] for source in card["sources"]}
    print(
        f"\nthe retrained run's extra sources: {trained_on}; "
        f"accuracy on the fixed shifted (inverted) test set of {len(test)} digits: "
        f"served model before {before:.3f} (base, {sorted(before_versions)}), "
        f"after {after:.3f} ({MD}-retrain-1, {sorted(after_versions)}); "
        f"held-out digits accuracy {base['metrics']['accuracy']:.3f} -> {retrained['metrics']['accuracy']:.3f}"
    )
    assert trigger["reason"] == "NewLabels" and trigger["message"].startswith(f"{FEEDBACK_IMAGES} new labels")
    assert trained_on == {"captured": FEEDBACK_IMAGES}
    # The old model is lost on inverted digits; the retrained one learnt them from the labelled captures.
    assert after > before + 0.3
    assert len(before_versions) == len(after_versions) == 1 and before_versions != after_versions
    history = status_of(cluster, DEPLOYMENTS, MD)["history"]
    assert [(h["action"], h["trainingRun"], h["previous"]) for h in history] == [
        ("Promoted", f"{MD}-retrain-1", "base")
    ]
    assert poller.failures == [] and len(poller.answers) > 50
    after_spec = cluster.get(DEPLOYMENTS, MD)
    assert after_spec["spec"] == applied["spec"]
