"""The operator pod's fsGroup lets it create the SQLite study on a fresh block-storage volume.

Such a volume's root is owned by root with mode 0755; the operator runs as uid 65532. With fsGroup
set, the kubelet gives the volume to that group before the container starts (SetVolumeOwnership in
the kubelet: chgrp fsGroup, g+rw on files, g+rwx and setgid on directories) and adds the group to
the container's process. This test does the same with the chart's own numbers and runs SQLite as
that process would. It needs root (to own the directory as root and run a process as 65532).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packaging.chart import needs_helm, of_kind, render

SQLITE = shutil.which("sqlite3")
pytestmark = [
    needs_helm,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another uid"),
    pytest.mark.skipif(SQLITE is None, reason="needs the sqlite3 command"),
]


def kubelet_volume_ownership(root: Path, fs_group: int) -> None:
    """What the kubelet does to a volume that supports ownership management, for fsGroup."""
    for path in [root, *root.rglob("*")]:
        os.chown(path, -1, fs_group)
        mask = 0o660 | (stat.S_ISGID | 0o110 if path.is_dir() else 0)
        path.chmod(stat.S_IMODE(path.stat().st_mode) | mask)


@pytest.fixture
def volume_root() -> Iterator[Path]:
    """A fresh volume's root: root-owned, 0755, reachable by other users (not under pytest's 0700 tmp)."""
    root = Path(tempfile.mkdtemp(prefix="crucible-volume-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


def create_study(volume: Path, security_context: dict) -> subprocess.CompletedProcess:
    """SQLite creating the study database as the operator's container process would."""
    groups = [security_context["fsGroup"]] if "fsGroup" in security_context else []
    return subprocess.run(
        [SQLITE, str(volume / "study.db"), "CREATE TABLE studies (study_id INTEGER PRIMARY KEY);"],
        user=security_context["runAsUser"], group=security_context["runAsGroup"], extra_groups=groups,
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def operator_security_context(values: dict) -> dict:
    (deployment,) = of_kind(render(values), "Deployment")
    return deployment["spec"]["template"]["spec"]["securityContext"]


def test_the_operator_creates_its_study_on_a_root_owned_volume(volume_root: Path) -> None:
    context = operator_security_context({})
    kubelet_volume_ownership(volume_root, context["fsGroup"])
    created = create_study(volume_root, context)
    assert created.returncode == 0, created.stderr
    assert (volume_root / "study.db").stat().st_uid == context["runAsUser"]


def test_without_fs_group_the_study_cannot_be_created(volume_root: Path) -> None:
    context = {key: value for key, value in operator_security_context({}).items() if key != "fsGroup"}
    created = create_study(volume_root, context)
    assert created.returncode != 0
    assert "unable to open database" in created.stderr
