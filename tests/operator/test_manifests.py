"""Pure builders and planning: specs in, valid Kubernetes manifests out, no cluster involved."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from crucible.api.manifest import InvalidSpec, parse_spec
from crucible.operator.config import OperatorConfig
from crucible.operator.kube import naming
from crucible.operator.kube.artifacts import VolumePath, output_location
from crucible.operator.modeldeployment.manifests import disruption_budget, server_deployment, server_service
from crucible.operator.modeldeployment.plan import plan_serving
from crucible.operator.trainingrun.manifests import training_children
from crucible.operator.trainingrun.plan import plan_training

KUBERNETES_VERSION = "1.33"
CONFIG = OperatorConfig.model_validate({"artifacts": {"claim": "artifacts"}})
ARTIFACT = VolumePath("artifacts", "default/digits/uid-1")


def run_body(spec: dict | None = None, name: str = "digits") -> dict:
    return {"metadata": {"name": name, "namespace": "ml", "uid": "uid-1"}, "spec": spec or {}}


def deployment_body(spec: dict | None = None, name: str = "digits") -> dict:
    return {
        "metadata": {"name": name, "namespace": "ml", "uid": "uid-2"},
        "spec": {"model": {"trainingRun": "digits-run"}, **(spec or {})},
    }


def training_manifests(spec: dict | None = None, name: str = "digits") -> tuple[dict, dict]:
    config_map, job = training_children(plan_training(run_body(spec, name), CONFIG), CONFIG.training)
    return config_map, job


def serving_manifests(spec: dict | None = None) -> list[dict]:
    plan = plan_serving(deployment_body(spec), ARTIFACT, CONFIG)
    return [server_deployment(plan, "digits-run", "ab" * 32), server_service(plan), disruption_budget(plan)]


def trainer(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_the_spec_reaches_the_trainer_as_json_in_a_config_map() -> None:
    config_map, job = training_manifests({"seed": 3, "model": {"architecture": "tiny_cnn"}})
    spec = parse_spec("TrainingRun", json.loads(config_map["data"]["spec.json"]))
    assert (spec.seed, spec.model.architecture) == (3, "tiny_cnn")
    volumes = {volume["name"]: volume for volume in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["spec"]["configMap"]["name"] == config_map["metadata"]["name"] == "digits-spec"


def test_trainer_job() -> None:
    _, job = training_manifests()
    assert job["metadata"]["name"] == "digits-train"
    assert job["metadata"]["labels"][naming.TRAINING_RUN] == "digits"
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (2, 86400)
    assert spec["ttlSecondsAfterFinished"] == 7 * 86400
    ignore_disruptions, fail_job = spec["podFailurePolicy"]["rules"]
    # An evicted pod is retried whatever its exit code; a failed gate (1), invalid input (2) and the
    # OOM killer's SIGKILL (137) would fail again with the same spec, so they fail the Job at once.
    assert ignore_disruptions == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert fail_job["action"] == "FailJob"
    assert fail_job["onExitCodes"]["values"] == [1, 2, 137]
    container = trainer(job)
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["command"] == [
        "crucible-train",
        "--spec",
        "/etc/crucible/spec.json",
        "--name",
        "digits",
        "--output",
        "/artifacts/artifacts/ml/digits/uid-1",
        "--artifact-uri",
        "pvc://artifacts/ml/digits/uid-1",
        "--termination-log",
        "/dev/termination-log",
        "--device",
        "cpu",
    ]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert "nodeSelector" not in job["spec"]["template"]["spec"]


def test_gpu_pool_gets_gpu_scheduling_rules_image_and_device() -> None:
    _, job = training_manifests({"resources": {"nodePool": "gpu", "gpu": 2}})
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    container = trainer(job)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["image"].startswith("crucible-trainer-cuda:")
    assert container["command"][-2:] == ["--device", "cuda"]


def test_pvc_dataset_is_mounted_read_only_and_its_local_path_passed_on() -> None:
    config_map, job = training_manifests({"dataset": {"source": "imageFolder", "uri": "pvc://data/flowers"}})
    assert json.loads(config_map["data"]["spec.json"])["dataset"]["uri"] == "/data/data/flowers"
    mounts = {mount["mountPath"]: mount for mount in trainer(job)["volumeMounts"]}
    assert mounts["/data/data"]["readOnly"] is True


def test_pvc_sources_are_mounted_read_only_once_per_claim_and_keep_their_names() -> None:
    sources = [{"uri": "pvc://captures/digits/labelled"}, {"uri": "pvc://data/more", "name": "extra"}]
    dataset = {"source": "imageFolder", "uri": "pvc://data/flowers", "sources": sources}
    config_map, job = training_manifests({"dataset": dataset})
    passed = json.loads(config_map["data"]["spec.json"])["dataset"]["sources"]
    assert passed == [
        {"uri": "/data/captures/digits/labelled", "name": "labelled"},
        {"uri": "/data/data/more", "name": "extra"},
    ]
    mounts = [mount for mount in trainer(job)["volumeMounts"] if mount["mountPath"].startswith("/data/")]
    assert sorted(mount["mountPath"] for mount in mounts) == ["/data/captures", "/data/data"]
    assert all(mount["readOnly"] for mount in mounts)


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (
            {"dataset": {"sources": [{"uri": "pvc://c/x"}, {"uri": "s3://b/labelled"}]}},
            "spec.dataset.sources[1].uri",
            "not supported",
        ),
        ({"resources": {"nodePool": "tpu"}}, "spec.resources.nodePool", "allowed values: cpu, gpu"),
        ({"resources": {"nodePool": "cpu", "gpu": 1}}, "spec.resources.gpu", "pools with GPUs: gpu"),
        ({"resources": {"nodePool": "gpu", "gpu": 0}}, "spec.resources.gpu", "set gpu >= 1"),
        ({"resources": {"memory": "4 GB"}}, "spec.resources.memory", "not a Kubernetes quantity"),
        ({"output": {"uri": "/abs/path"}}, "spec.output.uri", "cannot be used on a cluster"),
        ({"output": {"uri": "pvc://claim-only"}}, "spec.output.uri", "needs a claim and a path"),
        ({"dataset": {"source": "imageFolder", "uri": "s3://b/x"}}, "spec.dataset.uri", "not supported"),
        ({"model": {"architecture": "vgg"}}, "spec.model.architecture", "allowed values"),
    ],
)
def test_specs_this_cluster_cannot_run_name_the_field(spec: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        plan_training(run_body(spec), CONFIG)
    assert caught.value.field == field
    assert words in caught.value.detail


def test_output_locations() -> None:
    assert output_location(None, "store", "ns", "run", "u1").uri == "pvc://store/ns/run/u1"
    assert output_location("runs/a", "store", "ns", "run", "u1").uri == "pvc://store/runs/a"
    assert output_location("pvc://other/x/y/", "store", "ns", "run", "u1").uri == "pvc://other/x/y"


def test_long_names_stay_valid_and_distinct() -> None:
    long_a, long_b = "a" * 200, "a" * 199 + "b"
    assert len(naming.job_name(long_a)) <= 63
    assert naming.job_name(long_a) != naming.job_name(long_b)
    assert len(naming.label_value(long_a)) <= 63
    _, job = training_manifests(name=long_a)
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_server_deployment() -> None:
    deployment, service, budget = serving_manifests({"replicas": 3, "server": {"maxBatchSize": 32}})
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][:4] == ["crucible", "serve", "--model", "/model"]
    assert container["command"][container["command"].index("--max-batch-size") + 1] == "32"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    model_mount = next(mount for mount in container["volumeMounts"] if mount["mountPath"] == "/model")
    assert (model_mount["subPath"], model_mount["readOnly"]) == (ARTIFACT.path, True)
    assert spec["template"]["metadata"]["annotations"]["crucible.dev/model-sha256"] == "ab" * 32
    # The Service and the budget select every track's pods, the Deployment only its own.
    assert service["spec"]["selector"].items() <= spec["selector"]["matchLabels"].items()
    assert budget["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_server_on_gpu_pool() -> None:
    deployment, _, _ = serving_manifests({"resources": {"nodePool": "gpu", "gpu": 1}})
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["containers"][0]["command"][-1] == "cuda"


def test_configured_pools_replace_the_defaults() -> None:
    config = OperatorConfig.model_validate(
        {"nodePools": {"a100": {"nodeSelector": {"gpu": "a100"}, "gpuResource": "nvidia.com/gpu"}}}
    )
    plan = plan_serving(deployment_body({"resources": {"nodePool": "a100", "gpu": 1}}), ARTIFACT, config)
    assert server_deployment(plan, "r", "s")["spec"]["template"]["spec"]["nodeSelector"] == {"gpu": "a100"}
    with pytest.raises(InvalidSpec, match="allowed values: a100"):
        plan_serving(deployment_body(), ARTIFACT, config)


@pytest.mark.parametrize(
    "spec",
    [
        None,
        {"resources": {"nodePool": "gpu", "gpu": 1}},
        {"dataset": {"source": "imageFolder", "uri": "pvc://d/x"}},
    ],
)
def test_training_manifests_validate(spec: dict | None) -> None:
    for manifest in training_manifests(spec):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("spec", [None, {"resources": {"nodePool": "gpu", "gpu": 1}, "replicas": 2}])
def test_serving_manifests_validate(spec: dict | None) -> None:
    for manifest in serving_manifests(spec):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
