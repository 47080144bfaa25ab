"""The operator image builds from a locally made base and runs `crucible --help`, read-only and non-root.

Needs a Docker engine (skipped otherwise). The base is `crucible-base:bookworm` from
images/base/build-base.sh, made here when missing (debootstrap, a few minutes).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.packaging.chart import ROOT

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
