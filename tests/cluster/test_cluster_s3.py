"""Artifacts in S3 end to end on the real control plane: the operator (as the chart's ServiceAccount,
which may not read Secrets) configured with artifacts.s3, and the trainer pod run by the test kubelet as
a real `crucible-train` that uploads to a real (moto) S3 server with the credentials of a Secret, which
the kubelet hands it through secretKeyRef; the server pod downloads the model from there."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.conftest import FAST_SPEC
from tests.operator.e2e import DEPLOYMENTS, RUNS, condition_of, run_phase, status_of
from tests.operator.fake_cluster import eventually
from tests.operator.node_agent import NodeAgent
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import RealCluster
from tests.operator.service_proxy import ServiceProxy
from tests.operator.traffic import Traffic, infer_request
from tests.s3_store import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Store

SECRET = "s3-creds"
# The verified ONNX copies the card names come along: a server may run them.
ARTIFACT_FILES = (
    "model.int8.onnx", "model.json", "model.onnx", "model.pt", "predictions.json", "report.png", "result.json"
)  # fmt: skip


@pytest.fixture
def bucket(s3_store: S3Store) -> str:
    return s3_store.new_bucket()


@pytest.fixture
def operator_config(tmp_path: Path, s3_store: S3Store, bucket: str) -> Path:
    """As the chart renders it for artifacts.type s3 (the operator fixture reads this one)."""
    s3 = {
        "uri": f"s3://{bucket}/crucible",
        "credentialsSecret": SECRET,
        "endpoint": s3_store.endpoint,
        "region": REGION,
    }
    path = tmp_path / "operator.yaml"
    path.write_text(yaml.safe_dump({"artifacts": {"s3": s3}}))
    return path


async def create_credentials_secret(cluster: RealCluster) -> None:
    keys = {"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}
    body = {
        "metadata": {"name": SECRET},
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in keys.items()},
    }
    await cluster.create("v1/secrets", body)


def secret_env(container: dict) -> dict[str, dict]:
    return {item["name"]: item["valueFrom"] for item in container["env"] if "valueFrom" in item}


async def test_a_run_uploads_its_artifact_to_s3_and_is_served_from_there(
    cluster: RealCluster,
    operator: OperatorThread,
    training_and_serving_kubelet: NodeAgent,
    services: ServiceProxy,
    s3_store: S3Store,
    bucket: str,
) -> None:
    await create_credentials_secret(cluster)
    await cluster.create_resource("TrainingRun", "digits", FAST_SPEC)
    status = await run_phase(cluster, "digits", ("Succeeded", "Failed"), timeout=150)

    assert status["phase"] == "Succeeded", status.get("reason")
    uid = cluster.get(RUNS, "digits")["metadata"]["uid"]
    prefix = f"crucible/{cluster.namespace}/digits/{uid}"
    assert status["artifact"]["uri"] == f"s3://{bucket}/{prefix}"
    assert s3_store.keys(bucket) == [f"{prefix}/{name}" for name in ARTIFACT_FILES]
    weights = s3_store.get(bucket, f"{prefix}/model.pt")
    assert hashlib.sha256(weights).hexdigest() == status["artifact"]["sha256"]
    # No artifact volume anywhere: the trainer wrote to its /tmp and uploaded from there.
    job_pod = cluster.get("batch/v1/jobs", "digits-train")["spec"]["template"]["spec"]
    assert not any("persistentVolumeClaim" in volume for volume in job_pod["volumes"])
    assert not training_and_serving_kubelet.volume("artifacts").exists()
    assert secret_env(job_pod["containers"][0]) == {
        key: {"secretKeyRef": {"name": SECRET, "key": key}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }

    await cluster.create_resource("ModelDeployment", "digits", {"model": {"trainingRun": "digits"}})
    await eventually(
        lambda: condition_of(status_of(cluster, DEPLOYMENTS, "digits"), "Ready").get("status") == "True",
        120,
        "the ModelDeployment is Ready: its server downloaded the model from S3 and verified it",
    )
    server = cluster.get("apps/v1/deployments", "digits-stable")["spec"]["template"]["spec"]
    command = server["containers"][0]["command"]
    assert command[command.index("--model") + 1] == status["artifact"]["uri"]
    assert secret_env(server["containers"][0]) == secret_env(job_pod["containers"][0])
    assert server["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    # The server answers with the model the run uploaded.
    traffic = Traffic(await services.url("digits-server"), "digits", infer_request((3, 16, 16)))
    async with aiohttp.ClientSession() as session:
        answer = await traffic.send(session)
    assert answer.status == 200 and answer.model_version == status["artifact"]["sha256"][:12]
    # No claim was needed: the operator made the spec ConfigMap, the Job, the Deployment, the Services.
    made = {
        resource
        for resource in ("v1/configmaps", "batch/v1/jobs", "apps/v1/deployments", "v1/services")
        for body in cluster.objects_of(resource).values()
        if any(o.get("controller") for o in body["metadata"].get("ownerReferences") or [])
        and body["metadata"]["ownerReferences"][0]["kind"] in ("TrainingRun", "ModelDeployment")
    }
    assert made == {"v1/configmaps", "batch/v1/jobs", "apps/v1/deployments", "v1/services"}
