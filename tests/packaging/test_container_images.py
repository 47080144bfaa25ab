"""The operator image builds from a locally made base and runs `crucible --help`, read-only and non-root.

Needs a Docker engine (skipped otherwise). The base is `crucible-base:bookworm` from
images/base/build-base.sh, made here when missing (debootstrap, a few minutes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.cluster.controlplane import free_port
from tests.cluster.fixtures import create_namespace, delete_namespace, unique_name
from tests.cluster.kube import apply, get_json, wait_for
from tests.packaging.chart import ROOT, of_kind, operator_config, render

BASE = os.environ.get("CRUCIBLE_TEST_BASE_IMAGE", "crucible-base:bookworm")


def docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers"),
]


def run(*command: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def base_image() -> str:
    if run("docker", "image", "inspect", BASE).returncode != 0:
        if shutil.which("debootstrap") is None:
            pytest.skip(f"no {BASE} image and no debootstrap to make one")
        made = run("images/base/build-base.sh", BASE)
        assert made.returncode == 0, made.stderr[-3000:]
    return BASE


def test_operator_image_builds_and_runs_crucible_help(base_image: str) -> None:
    built = run("images/build.sh", "--base", base_image, "--only", "operator")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    version = run(".venv/bin/python", "-c", "import crucible; print(crucible.__version__)").stdout.strip()
    image = f"crucible-operator:{version}"
    # As the chart runs it: a read-only root file system, an unprivileged user, /tmp as scratch.
    ran = run("docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--user", "65532:65532",
              "--cap-drop", "ALL", "--security-opt", "no-new-privileges", image, "--help")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "operator" in ran.stdout and "crds" in ran.stdout
    user = run("docker", "image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert user == "65532:65532"
    # No torch in the operator image.
    no_torch = run("docker", "run", "--rm", "--entrypoint", "python3", image, "-c", "import torch")
    assert no_torch.returncode != 0


@pytest.fixture(scope="module")
def operator_image(base_image: str) -> str:
    built = run("images/build.sh", "--base", base_image, "--only", "operator")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    version = run(".venv/bin/python", "-c", "import crucible; print(crucible.__version__)").stdout.strip()
    return f"crucible-operator:{version}"


def _service_account_files(directory: Path, kubeconfig: Path, ca: Path, namespace: str) -> Path:
    """What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount: token, CA, namespace."""
    document = yaml.safe_load(kubeconfig.read_text())
    directory.mkdir()
    (directory / "token").write_text(document["users"][0]["user"]["token"])
    (directory / "ca.crt").write_bytes(ca.read_bytes())
    (directory / "namespace").write_text(namespace)
    for path in directory.iterdir():
        path.chmod(0o644)
    return directory


def test_the_operator_image_starts_and_works_as_the_chart_runs_it_on_a_real_control_plane(
    operator_image: str, control_plane, crucible_crds, kube_api, namespace: str, tmp_path: Path
) -> None:
    """The chart's container (its args, uid, read-only root, dropped capabilities, its config file) with
    in-cluster credentials of the chart's ServiceAccount bound to the chart's ClusterRole, against the
    real API server. Deliberately without the chart's $POD_ID: the image must not depend on it (uid 65532
    has no passwd entry, and kopf's own naming crash-looped there). Ready means kopf's /healthz
    answers, as the chart's readinessProbe asks; working means a TrainingRun gets its Job."""
    health, proxy = free_port(), free_port()
    manifests = render({"liveness": {"port": health}, "tuning": {"proxyPort": proxy}})
    (deployment,) = of_kind(manifests, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    (cluster_role,) = [role for role in of_kind(manifests, "ClusterRole") if role["rules"]]
    apply(kube_api, cluster_role)
    operator_namespace = create_namespace(kube_api, unique_name("crucible-system"))
    kubeconfig = control_plane.service_account_kubeconfig(
        operator_namespace, "crucible", cluster_role["metadata"]["name"], tmp_path / "operator.kubeconfig"
    )
    credentials = _service_account_files(
        tmp_path / "serviceaccount", kubeconfig, control_plane.pki / "ca.crt", operator_namespace
    )
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.yaml").write_text(yaml.safe_dump(operator_config(manifests)))
    config.chmod(0o755)
    (config / "config.yaml").chmod(0o644)
    # The study volume as the chart's fsGroup leaves it: group-writable by the image's group.
    study = tmp_path / "study"
    study.mkdir()
    os.chown(study, 0, 65532)
    study.chmod(0o2775)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    study_path = next(path for path, name in mounts.items() if name == "study")
    literal_env = [f"{e['name']}={e['value']}" for e in container.get("env", []) if "value" in e]
    host, port = control_plane.server.removeprefix("https://").rsplit(":", 1)
    name = unique_name("crucible-operator")
    started = run(
        "docker", "run", "-d", "--name", name, "--network", "host",
        "--read-only", "--tmpfs", "/tmp", "--user", "65532:65532", "--group-add", "65532",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        # What the kubelet gives every pod: where the API is, and the ServiceAccount's files.
        "-e", f"KUBERNETES_SERVICE_HOST={host}", "-e", f"KUBERNETES_SERVICE_PORT={port}",
        *[arg for entry in literal_env for arg in ("-e", entry)],
        "-v", f"{credentials}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
        "-v", f"{config}:/etc/crucible:ro", "-v", f"{study}:{study_path}",
        operator_image, *container["args"],
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        _wait_ready(name, f"http://127.0.0.1:{health}/healthz")
        run_manifest = {
            "apiVersion": "crucible.dev/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {"name": "digits", "namespace": namespace},
            "spec": {"dataset": {"source": "digits"}, "model": {"architecture": "tiny_cnn"}},
        }
        apply(kube_api, run_manifest)
        job = wait_for(
            lambda: _get_or_none(kube_api, f"/apis/batch/v1/namespaces/{namespace}/jobs/digits-train"),
            timeout=60,
            what="the trainer Job created by the operator in its image",
        )
        assert job["metadata"]["ownerReferences"][0]["kind"] == "TrainingRun"
        # Still running: it did not crash after starting (other tests' namespaces going away while it
        # watches every namespace make kopf log refused Events, which are not the image's fault).
        state = run("docker", "inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        assert state == "running", run("docker", "logs", name).stderr[-3000:]
    finally:
        run("docker", "rm", "-f", name)
        delete_namespace(kube_api, operator_namespace)


def _get_or_none(api, path: str) -> dict | None:
    from kubernetes.client import ApiException

    try:
        return get_json(api, path)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _wait_ready(container: str, url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = run("docker", "inspect", "--format", "{{.State.Status}}", container).stdout.strip()
        if state != "running":
            logs = run("docker", "logs", container)
            raise AssertionError(f"the operator container is {state}:\n{(logs.stdout + logs.stderr)[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    logs = run("docker", "logs", container)
    raise AssertionError(f"not ready within {timeout} s:\n{(logs.stdout + logs.stderr)[-3000:]}")
