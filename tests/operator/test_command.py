"""`crucible operator` and its install path: no torch, and configuration errors name the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crucible.api.manifest import InvalidSpec
from crucible.operator.command import operator_identity
from crucible.operator.config import load_config


def test_the_operator_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "import crucible.operator.main, crucible.operator.command, crucible.api.crd\n"
        "from crucible.cli import build_parser\n"
        "build_parser()\n"
        "crucible.api.crd.render_all()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        # The operator only writes S3 settings into manifests; its image has no S3 client.
        "assert 'boto3' not in sys.modules, 'boto3 was imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_a_bad_configuration_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "operator.yaml"
    config.write_text("nodePools:\n  gpu:\n    gpuResources: nvidia.com/gpu\n")
    result = subprocess.run(
        [sys.executable, "-m", "crucible", "operator", "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "config.nodePools.gpu.gpuResources: unknown field" in result.stderr
    assert "gpuResource" in result.stderr


def test_configuration_defaults_and_errors(tmp_path: Path) -> None:
    assert sorted(load_config().node_pools) == ["cpu", "gpu"]
    with pytest.raises(InvalidSpec, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty).artifacts.claim == "crucible-artifacts"


def test_the_pod_name_is_the_operators_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_ID", "crucible-operator-7d9f-abcde")
    assert operator_identity() == "crucible-operator-7d9f-abcde"


def test_a_uid_without_passwd_entry_still_gets_an_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """The images run as uid 65532, which has no passwd entry: getpass.getuser() raises KeyError there
    (kopf called it when naming itself, and the operator crash-looped at start)."""
    import getpass

    def no_passwd_entry() -> str:
        raise KeyError("getpwuid(): uid not found: 65532")

    monkeypatch.delenv("POD_ID", raising=False)
    monkeypatch.setattr(getpass, "getuser", no_passwd_entry)
    assert operator_identity().startswith(f"{os.getuid()}@")
