"""Artifacts in an S3-compatible store, as the operator plans them: where a run writes, what its trainer
Job and its servers' Deployment look like (credentials from the Secret by reference, no volume), and
what it refuses. Pure: specs in, valid manifests out, no cluster and no S3 client involved."""

from __future__ import annotations

import kubernetes_validate
import pytest

from crucible.api.manifest import InvalidSpec
from crucible.operator.config import OperatorConfig
from crucible.operator.kube.artifacts import VolumePath, output_location
from crucible.operator.modeldeployment.manifests import server_deployment, server_service
from crucible.operator.modeldeployment.plan import plan_serving
from crucible.operator.modeldeployment.status import judge
from crucible.operator.trainingrun.manifests import training_children
from crucible.operator.trainingrun.plan import plan_training
from crucible.s3 import S3Location
from tests.operator.test_manifests import CONFIG, KUBERNETES_VERSION, deployment_body, run_body, trainer
from tests.operator.test_status import succeeded_run

S3 = {
    "uri": "s3://models/crucible",
    "credentialsSecret": "s3-creds",
    "endpoint": "http://minio.storage:9000",
    "region": "eu-west-1",
}
S3_CONFIG = OperatorConfig.model_validate({"artifacts": {"claim": "artifacts", "s3": S3}})
S3_ENV = [
    {
        "name": "AWS_ACCESS_KEY_ID",
        "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}},
    },
    {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}},
    },
    {"name": "AWS_ENDPOINT_URL", "value": "http://minio.storage:9000"},
    {"name": "AWS_DEFAULT_REGION", "value": "eu-west-1"},
]
ARTIFACT = S3Location("models", "crucible/ml/digits-run/uid-1")


def pod_of(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def aws_env(container: dict) -> list[dict]:
    return [item for item in container["env"] if item["name"].startswith("AWS_")]


def test_a_run_with_no_output_uri_writes_below_the_s3_base_uri() -> None:
    plan = plan_training(run_body(), S3_CONFIG)
    assert plan.output == S3Location("models", "crucible/ml/digits/uid-1")
    config_map, job = training_children(plan, S3_CONFIG.training)
    container = trainer(job)
    command = container["command"]
    # Written to the pod's scratch space, then uploaded by the trainer itself.
    assert command[command.index("--output") + 1] == "/tmp/artifact"
    assert command[command.index("--artifact-uri") + 1] == "s3://models/crucible/ml/digits/uid-1"
    assert aws_env(container) == S3_ENV
    # No artifact volume: the spec ConfigMap, the /tmp scratch emptyDir and shared memory only.
    assert [sorted(set(volume) - {"name"}) for volume in pod_of(job)["volumes"]] == [
        ["configMap"],
        ["emptyDir"],
        ["emptyDir"],
    ]
    mount_paths = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert mount_paths == {"/etc/crucible", "/tmp", "/dev/shm"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for manifest in (config_map, job):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("runs/a", "s3://models/crucible/runs/a"),
        ("s3://other-bucket/x/y/", "s3://other-bucket/x/y"),
        ("pvc://artifacts/x", "pvc://artifacts/x"),
    ],
)
def test_output_uris_when_s3_is_configured(uri: str, expected: str) -> None:
    plan = plan_training(run_body({"output": {"uri": uri}}), S3_CONFIG)
    assert plan.output.uri == expected
    container = trainer(training_children(plan, S3_CONFIG.training)[1])
    # A volume output is mounted as ever, and its pod gets no S3 settings.
    on_volume = expected.startswith("pvc://")
    assert bool(aws_env(container)) is not on_volume
    assert any(m["mountPath"] == "/artifacts/artifacts" for m in container["volumeMounts"]) is on_volume


def test_the_default_location_mirrors_the_volume_layout() -> None:
    assert output_location(None, "store", "ns", "run", "u1").uri == "pvc://store/ns/run/u1"
    assert (
        output_location(None, "store", "ns", "run", "u1", S3Location("models", "a/b")).uri
        == "s3://models/a/b/ns/run/u1"
    )
    assert (
        output_location(None, "store", "ns", "run", "u1", S3Location("models", "")).uri
        == "s3://models/ns/run/u1"
    )


def test_an_s3_output_without_s3_storage_names_the_field_and_the_allowed_forms() -> None:
    with pytest.raises(InvalidSpec) as caught:
        plan_training(run_body({"output": {"uri": "s3://models/runs/a"}}), CONFIG)
    assert caught.value.field == "spec.output.uri"
    assert "artifacts.s3" in caught.value.detail
    assert "allowed: pvc://<claim>/<path>, a path relative to the default artifacts volume, or unset" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("s3://models", "needs a bucket and a prefix: s3://<bucket>/<prefix>"),
        ("s3://models/../x", "must not contain '..'"),
        ("s3://Models/x", "is not a bucket name"),
        (
            "gs://models/x",
            "allowed: pvc://<claim>/<path>, s3://<bucket>/<prefix>, a path relative to s3://models/crucible, or unset",
        ),
    ],
)
def test_bad_s3_outputs_name_the_field(uri: str, words: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        plan_training(run_body({"output": {"uri": uri}}), S3_CONFIG)
    assert caught.value.field == "spec.output.uri"
    assert words in caught.value.detail


def test_the_server_of_an_s3_artifact_downloads_it_with_the_same_credentials() -> None:
    plan = plan_serving(deployment_body(), ARTIFACT, S3_CONFIG)
    deployment = server_deployment(plan, "digits-run", "ab" * 32)
    container = pod_of(deployment)["containers"][0]
    command = container["command"]
    assert command[command.index("--model") + 1] == "s3://models/crucible/ml/digits-run/uid-1"
    assert aws_env(container) == S3_ENV
    assert pod_of(deployment)["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    # The probes are those of a server reading a volume: the download happens before "live".
    on_volume = server_deployment(
        plan_serving(deployment_body(), VolumePath("artifacts", "ml/digits-run/uid-1"), S3_CONFIG),
        "digits-run",
        "ab" * 32,
    )
    probes = ("startupProbe", "livenessProbe", "readinessProbe")
    assert {p: container[p] for p in probes} == {p: pod_of(on_volume)["containers"][0][p] for p in probes}
    for manifest in (deployment, server_service(plan)):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_an_s3_artifact_cannot_be_served_by_an_operator_without_s3_storage() -> None:
    with pytest.raises(InvalidSpec) as caught:
        plan_serving(deployment_body(), ARTIFACT, CONFIG)
    assert caught.value.field == "status.artifact.uri"
    assert "artifacts.s3" in caught.value.detail


def test_a_run_whose_artifact_is_in_s3_may_be_served() -> None:
    verdict = judge(succeeded_run(artifact={"uri": ARTIFACT.uri, "sha256": "a" * 64}), "r")
    assert verdict.servable and verdict.artifact == ARTIFACT
    refused = judge(succeeded_run(artifact={"uri": "gs://models/x", "sha256": "a" * 64}), "r")
    assert refused.reason == "ArtifactNotMountable"
    assert "allowed: pvc://<claim>/<path> or s3://<bucket>/<prefix>" in refused.message
