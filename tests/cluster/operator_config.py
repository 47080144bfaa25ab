"""The operator's configuration file for end-to-end tests: the chart's artifacts claim, plus what a test
needs (a short interval, a study on this machine)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cluster.controlplane import free_port

ARTIFACTS_CLAIM = "artifacts"


def write_operator_config(tmp_path: Path, **sections: dict) -> Path:
    path = tmp_path / "operator.yaml"
    path.write_text(yaml.safe_dump({"artifacts": {"claim": ARTIFACTS_CLAIM}, **sections}))
    return path


def local_study(tmp_path: Path) -> dict:
    """The tuning section: studies in a temporary folder, the study proxy on a free local port of this
    machine, where the test kubelet's trainers run."""
    return {
        "study": {"path": str(tmp_path / "study")},
        "proxyBind": "127.0.0.1",
        "proxyAddress": "127.0.0.1",
        "proxyPort": free_port(),
    }
