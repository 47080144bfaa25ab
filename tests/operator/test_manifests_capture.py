"""spec.capture of a ModelDeployment as the operator plans it: the server's --capture flags, a pvc://
destination mounted read-write, an s3:// one with the artifact credentials. Pure: no cluster."""

from __future__ import annotations

import kubernetes_validate
import pytest

from crucible.api.manifest import InvalidSpec
from crucible.operator.modeldeployment.manifests import server_deployment
from crucible.operator.modeldeployment.plan import plan_serving
from tests.operator.test_manifests import ARTIFACT, CONFIG, KUBERNETES_VERSION, deployment_body
from tests.operator.test_manifests_s3 import S3_CONFIG, aws_env


def server_container(spec: dict, config=CONFIG) -> tuple[dict, dict]:
    deployment = server_deployment(
        plan_serving(deployment_body(spec), ARTIFACT, config), "digits-run", "ab" * 32
    )
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    pod = deployment["spec"]["template"]["spec"]
    return pod["containers"][0], pod


def test_capture_is_off_by_default() -> None:
    container, _ = server_container({})
    assert "--capture" not in container["command"]
    assert all(mount["mountPath"] != "/capture" for mount in container["volumeMounts"])


def test_a_pvc_destination_is_mounted_read_write_and_passed_with_the_rate_and_limit() -> None:
    capture = {"sampleRate": 0.25, "destination": "pvc://artifacts/capture/digits", "maxBytesPerDay": 1000000}
    container, pod = server_container({"capture": capture})
    command = container["command"]
    assert command[command.index("--capture") :] == [
        "--capture",
        "/capture",
        "--capture-sample-rate",
        "0.25",
        "--capture-max-bytes-per-day",
        "1000000",
    ]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/capture")
    assert (mount["subPath"], mount["readOnly"]) == ("capture/digits", False)
    # The model's directory stays read-only, on the same claim, which is then a read-write volume.
    model = next(m for m in container["volumeMounts"] if m["mountPath"] == "/model")
    assert model["readOnly"] is True
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)["persistentVolumeClaim"]
    assert claim == {"claimName": "artifacts"}


def test_an_s3_destination_gets_the_artifact_credentials() -> None:
    container, _ = server_container(
        {"capture": {"sampleRate": 1, "destination": "s3://models/capture/digits"}}, S3_CONFIG
    )
    command = container["command"]
    assert command[command.index("--capture") + 1] == "s3://models/capture/digits"
    assert aws_env(container)
    with pytest.raises(InvalidSpec, match=r"spec\.capture\.destination.*no S3 credentials"):
        plan_serving(
            deployment_body({"capture": {"sampleRate": 1, "destination": "s3://models/capture"}}),
            ARTIFACT,
            CONFIG,
        )


@pytest.mark.parametrize(
    ("capture", "words"),
    [
        ({"sampleRate": 0.5}, "destination: required when sampleRate is above 0"),
        ({"sampleRate": 1.5, "destination": "pvc://a/b"}, "sampleRate"),
        ({"sampleRate": 1, "destination": "http://example/x"}, "destination"),
        ({"sampleRate": 1, "destination": "pvc://a/../b"}, "'..'"),
    ],
)
def test_bad_capture_specs_name_the_field(capture: dict, words: str) -> None:
    with pytest.raises(InvalidSpec, match=words):
        plan_serving(deployment_body({"capture": capture}), ARTIFACT, CONFIG)
