"""Render the Helm chart: the values of each scenario the tests check, and a cached `helm template`."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "crucible"
HELM = ROOT / ".tools" / "bin" / "helm"
RELEASE, NAMESPACE = "crucible", "crucible-system"

NAMESPACED = {"watch": {"allNamespaces": False, "namespaces": ["ml", "research"]}}
PEERING = {"peering": {"enabled": True}}
POSTGRESQL = {"tuning": {"study": {"type": "postgresql", "postgresql": {"existingSecret": "study-db"}}}}
S3 = {"artifacts": {"type": "s3", "s3": {"uri": "s3://models/crucible", "credentialsSecret": "s3-creds"}}}
A100_POOL = {
    "nodePools": {
        "a100": {
            "nodeSelector": {"gpu-type": "a100"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "gpuResource": "nvidia.com/gpu",
            "runtimeClassName": "nvidia",
            "imageSuffix": "-cuda",
        }
    }
}
SCENARIOS = {
    "default": {},
    "gpu-pool": A100_POOL,
    "namespaced": NAMESPACED,
    "peering": PEERING,
    "peering-namespaced": {**NAMESPACED, **PEERING},
    "postgresql-study": POSTGRESQL,
    "s3-artifacts": S3,
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "console": {"console": {"enabled": True, "namespace": "ml"}},
    "promotion": {"promotion": {"requiredGates": ["crossValidation"], "minMetric": {"accuracy": 0.95}}},
}

needs_helm = pytest.mark.skipif(
    not HELM.exists(), reason="helm is not in .tools/bin (scripts/fetch-tools.sh)"
)


def helm(*args: str, values: dict | None = None) -> subprocess.CompletedProcess:
    """Run helm on the chart; values go in as one JSON document (JSON is YAML)."""
    command = [str(HELM), *args]
    if values is not None:
        command += ["--values", "-"]
    return subprocess.run(command, input=json.dumps(values or {}), capture_output=True, text=True, timeout=60)


@functools.cache
def _render(values_json: str) -> tuple[dict, ...]:
    result = helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds",
        values=json.loads(values_json),
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(result.stderr)
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(values: dict) -> list[dict]:
    """The chart's manifests with these values (CRDs included)."""
    return list(_render(json.dumps(values, sort_keys=True)))


def of_kind(manifests: list[dict], kind: str) -> list[dict]:
    return [manifest for manifest in manifests if manifest["kind"] == kind]


def operator_config(manifests: list[dict]) -> dict:
    (config_map,) = of_kind(manifests, "ConfigMap")
    return yaml.safe_load(config_map["data"]["config.yaml"])
