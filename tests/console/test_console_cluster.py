"""The console against the real control plane of the test suite, as the chart deploys it: the custom
resources are created with the status an operator writes (a trained run, a tuning job with a trial
still running, a canary half-way), and the console reads them with the chart's read-only
ServiceAccount. No operator runs: the console shows what the API server holds."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from crucible.console.cluster import ClusterSource
from tests.conftest import FAST_SPEC
from tests.packaging.chart import HELM, of_kind, render
from tests.tuning.jobs import job_document

pytestmark = pytest.mark.skipif(
    not HELM.exists(), reason="helm is not in .tools/bin (scripts/fetch-tools.sh)"
)

GROUP, VERSION = "crucible.dev", "v1alpha1"
NOW = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: str, status: str, reason: str, message: str = "") -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": NOW}


def create_with_status(
    api,
    namespace: str,
    plural: str,
    kind: str,
    name: str,
    spec: dict,
    status: dict,
    labels: dict | None = None,
) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, {"status": status})


def trained_status(artifact: Path) -> dict:
    result = json.loads((artifact / "result.json").read_text())
    return {
        "phase": "Succeeded",
        "gates": result["gates"],
        "metrics": result["metrics"],
        # What the operator copies from the result besides: the pages draw from it without the artifact.
        **{key: result[key] for key in ("fingerprints", "outcomes", "evaluation")},
        "artifact": {"uri": "pvc://crucible-artifacts/digits-a", "sha256": result["artifact"]["sha256"]},
        "conditions": [
            condition("Ready", "True", "Succeeded"),
            condition("GatesPassed", "True", "AllGatesPassed"),
        ],
    }


@pytest.fixture
def cluster_objects(kube_api, crucible_crds, namespace: str, digits_artifact: Path) -> str:
    from kubernetes import client

    trained = trained_status(digits_artifact)
    create_with_status(
        kube_api, namespace, "trainingruns", "TrainingRun", "digits-a", FAST_SPEC, trained, {"team": "vision"}
    )
    trial_labels = {"crucible.dev/tuning-job": "search"}
    trial_zero = copy.deepcopy(trained)
    trial_zero["metrics"]["accuracy"] = 0.931
    create_with_status(
        kube_api,
        namespace,
        "trainingruns",
        "TrainingRun",
        "search-trial-000",
        FAST_SPEC,
        trial_zero,
        {**trial_labels, "crucible.dev/trial-number": "0"},
    )
    create_with_status(
        kube_api,
        namespace,
        "trainingruns",
        "TrainingRun",
        "search-trial-001",
        FAST_SPEC,
        {"phase": "Running", "jobName": "search-trial-001-train"},
        {**trial_labels, "crucible.dev/trial-number": "1"},
    )
    best = {
        "number": 0,
        "state": "COMPLETE",
        "value": 0.931,
        "params": {"hyperparameters.learningRate": 0.01},
        "trainingRun": "search-trial-000",
    }
    create_with_status(
        kube_api,
        namespace,
        "tuningjobs",
        "TuningJob",
        "search",
        job_document(),
        {
            "phase": "Running",
            "studyName": f"{namespace}.search",
            "progress": "1/3",
            "trialCounts": {"complete": 1, "running": 1},
            "bestTrial": best,
            "baselineTrial": best,
            "conditions": [condition("Progressing", "True", "TrialsRunning")],
        },
    )
    deployment_spec = yaml.safe_load(Path("examples/modeldeployment-digits.yaml").read_text())["spec"]
    deployment_spec["model"] = {"trainingRun": "digits-a"}
    served = {
        "trainingRun": "digits-a",
        "uri": "pvc://crucible-artifacts/digits-a",
        "sha256": trained["artifact"]["sha256"],
        "accuracy": trained["metrics"]["accuracy"],
    }
    create_with_status(
        kube_api,
        namespace,
        "modeldeployments",
        "ModelDeployment",
        "digits",
        deployment_spec,
        {
            "currentModel": {**served, "trainingRun": "digits-old"},
            "candidateModel": served,
            "canary": {
                "candidate": "digits-a",
                "step": 2,
                "steps": 4,
                "weight": 25,
                "phase": "Analysing",
                "stepStartedAt": NOW,
                "analysesPassed": 1,
                "lastAnalysis": {
                    "time": NOW,
                    "verdict": "Wait",
                    "requests": 240,
                    "errorRate": 0.0042,
                    "latencyP95Ms": 18.5,
                    "message": "1 of 2 analyses passed",
                },
            },
            "history": [
                {
                    "time": NOW,
                    "action": "Promoted",
                    "trainingRun": "digits-old",
                    "previous": "digits-first",
                    "reason": "BetterModel",
                    "message": "accuracy 0.95 > 0.93",
                }
            ],
            "rejected": ["digits-bad"],
            "replicas": 4,
            "readyReplicas": 3,
            "updatedReplicas": 1,
            "availableReplicas": 3,
            "conditions": [
                condition("Progressing", "True", "CanaryAnalysing"),
                condition("Ready", "False", "Rollout"),
            ],
        },
    )
    core = client.CoreV1Api(kube_api)
    # Without the controllers nobody makes the namespace's default ServiceAccount that pods run as (when
    # another test started them, the ServiceAccount controller has made it already).
    try:
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "default"}})
    except client.ApiException as error:
        if error.status != 409:
            raise
    for pod, labels in (
        ("digits-canary-7f9c", {"crucible.dev/model-deployment": "digits", "crucible.dev/track": "canary"}),
        ("search-trial-001-train-x2k4", {"crucible.dev/training-run": "search-trial-001"}),
    ):
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": pod, "labels": labels},
                "spec": {"containers": [{"name": "main", "image": "crucible"}]},
            },
        )
    core.create_namespaced_event(
        namespace,
        {
            "metadata": {"name": "digits-a.gates"},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "TrainingRun",
                "name": "digits-a",
                "namespace": namespace,
            },
            "type": "Normal",
            "reason": "GatesPassed",
            "message": "debug, crossValidation and overfitting passed",
            "count": 1,
            "lastTimestamp": NOW,
            "firstTimestamp": NOW,
            "source": {"component": "crucible-operator"},
        },
    )
    return namespace


@pytest.fixture
def read_only_source(control_plane, kube_api, cluster_objects: str, tmp_path: Path) -> ClusterSource:
    """The console's source with the token of a ServiceAccount bound to the chart's console ClusterRole."""
    from kubernetes import client

    [role] = [
        copy.deepcopy(r)
        for r in of_kind(render({"console": {"enabled": True}}), "ClusterRole")
        if r["metadata"]["name"].endswith("-console")
    ]
    role["metadata"]["name"] = f"console-{cluster_objects}"
    rbac = client.RbacAuthorizationV1Api(kube_api)
    rbac.create_cluster_role(role)
    kubeconfig = control_plane.service_account_kubeconfig(
        cluster_objects, "console", role["metadata"]["name"], tmp_path / "kubeconfig"
    )
    yield ClusterSource.connect(str(kubeconfig))
    rbac.delete_cluster_role(role["metadata"]["name"])


def test_the_console_reads_the_cluster_with_its_read_only_role(read_only_source, cluster_objects):
    from fastapi.testclient import TestClient

    from crucible.console.app import create_app

    namespace = cluster_objects
    with TestClient(create_app(read_only_source)) as http:
        runs = http.get("/runs?label=team%3Dvision").text
        assert f"Namespace {namespace}" in runs and "digits-a" in runs and "search-trial-000" not in runs

        run = http.get(f"/runs/{namespace}/digits-a").text
        for expected in (
            "overfitOneBatch",
            "fold 3",
            "GatesPassed",
            "debug, crossValidation and overfitting passed",
            "served by ModelDeployment",
            "pvc://crucible-artifacts/digits-a",
            # No report.png out here: the curves and confusion matrix are drawn from status.evaluation.
            "Drawn from the run's result",
            'aria-label="loss of the final fit by epoch"',
            "<title>true 7, predicted 7: ",
        ):
            assert expected in run, expected

        # Compared from their statuses: fingerprints, outcome bits, per-class summary (a trial of the
        # same data; the test kubelet's copy of the same model, so nothing differs).
        both = http.get(f"/compare?run={namespace}/digits-a&run={namespace}/search-trial-000")
        assert both.status_code == 200
        assert (
            "0 right only by search-trial-000, 0 right only by digits-a; <strong>p = 1</strong>" in both.text
        )
        assert re.search(r'<abbr>F1</abbr> [\d.]+ <span class="delta same">\(0\)</span>', both.text)

        job = http.get(f"/tuningjobs/{namespace}/search", headers={"X-Console-Fragment": "main"})
        assert job.headers["X-Console-Live"] == "true"
        assert "1 complete" in job.text and "1 running" in job.text and "RUNNING" in job.text
        assert "0.931" in job.text and f'href="runs/{namespace}/search-trial-001"' in job.text
        trial = http.get(f"/runs/{namespace}/search-trial-001").text
        assert "Trainer pods" in trial and "search-trial-001-train-x2k4" in trial and "Pending" in trial

        deployment = http.get(f"/deployments/{namespace}/digits").text
        for expected in (
            "2 of 4",
            "25 %",
            "Analysing",
            "240",
            "0.42 %",
            "18.5 ms",
            "digits-old",
            "BetterModel",
            "digits-bad",
            "3 of 4",
            "CanaryAnalysing",
            "digits-canary-7f9c",
            "canary",
        ):
            assert expected in deployment, expected
        assert http.get(f"/api/deployments/{namespace}/nope").status_code == 404


def test_the_canary_and_the_running_search_in_the_browser(read_only_source, cluster_objects):
    from selenium.webdriver.common.by import By

    from crucible.console.app import create_app
    from tests.browser import (
        at_desktop_width,
        at_phone_width,
        chromium,
        console_errors,
        horizontal_overflow,
        other_hosts,
        requested_urls,
        screenshot,
        served,
    )

    namespace = cluster_objects
    with served(create_app(read_only_source, refresh_seconds=0.5)) as url, chromium() as browser:
        browser.get(f"{url}deployments")
        link = f"deployments/{namespace}/digits"
        assert browser.find_elements(By.CSS_SELECTOR, f'a[href="{link}"]')
        browser.get(url + link)  # the list refreshes itself every half second: links come and go
        text = browser.find_element(By.TAG_NAME, "main").text
        assert "Step\n2 of 4" in text and "Weight\n25 %" in text and "Ready\n3 of 4" in text
        assert browser.find_element(By.TAG_NAME, "main").get_attribute("data-live") == "true"
        screenshot(browser, "console-deployment")
        at_phone_width(browser)
        assert horizontal_overflow(browser) == 0
        at_desktop_width(browser)

        browser.get(f"{url}runs/{namespace}/digits-a")
        assert "Drawn from the run's result" in browser.find_element(By.TAG_NAME, "main").text
        assert len(browser.find_elements(By.CSS_SELECTOR, "svg.confusion rect.hit")) == 10
        assert len(browser.find_elements(By.CSS_SELECTOR, "svg.curves")) == 2
        screenshot(browser, "console-run-cluster")
        at_phone_width(browser)
        assert horizontal_overflow(browser) == 0
        at_desktop_width(browser)

        browser.get(f"{url}tuningjobs/{namespace}/search")
        rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "table.trials tbody tr")]
        assert rows[0].startswith("0 COMPLETE 0.931") and rows[1].startswith("1 RUNNING")
        screenshot(browser, "console-tuningjob-cluster")
        assert console_errors(browser) == []
        assert other_hosts(requested_urls(browser), url) == []
