"""Pytest fixtures for the real control plane (tests/cluster/controlplane.py), for every part's tests
(tests/conftest.py imports them).

The control plane starts once per test session, on first use; each test gets a namespace of its own.
Without the binaries every test that asks for it is skipped with one line saying how to get them.

- `control_plane`: etcd + kube-apiserver; `.kubeconfig` (admin), `.api_client()`, `.version()`,
  `.service_account_kubeconfig(namespace, name, cluster_role, path)` (a TokenRequest token).
- `cluster_controllers`: the same, with kube-controller-manager and kube-scheduler started (once).
- `kube_api`: an admin `kubernetes.client.ApiClient`; `namespace`: a fresh namespace per test.
- `crucible_crds`: crds/ applied and Established.
- tests/cluster/kube.py: `apply` (server-side), `create`, `refusal` (dry run), `request`, `wait_for`;
  tests/cluster/chart.py: `render_chart`, `operator_kubeconfig` (the chart's ServiceAccount and
  rendered ClusterRole, for running the operator with exactly the chart's permissions).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
import yaml

from tests.cluster.controlplane import ROOT, ControlPlane, start_control_plane
from tests.cluster.kube import apply, get_json, wait_for


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver (RBAC, OwnerReferencesPermissionEnforcement), stopped at the end."""
    try:
        plane = start_control_plane(tmp_path_factory.mktemp("control-plane"))
    except FileNotFoundError as missing:
        pytest.skip(str(missing))
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def cluster_controllers(control_plane: ControlPlane) -> ControlPlane:
    """The same control plane with kube-controller-manager and kube-scheduler running (started once)."""
    control_plane.start_controllers()
    return control_plane


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane):  # -> kubernetes.client.ApiClient
    """A `kubernetes.client.ApiClient` for the admin (system:masters)."""
    api = control_plane.api_client()
    yield api
    api.close()


def create_namespace(api, name: str, labels: dict[str, str] | None = None) -> str:
    from kubernetes import client

    client.CoreV1Api(api).create_namespace({"metadata": {"name": name, "labels": labels or {}}})
    return name


def delete_namespace(api, name: str) -> None:
    """Ask for the deletion and move on: the namespace controller (when running) empties it."""
    from kubernetes import client

    try:
        client.CoreV1Api(api).delete_namespace(name)
    except client.ApiException as error:
        if error.status != 404:
            raise


def unique_name(prefix: str, max_length: int = 63) -> str:
    """A DNS-1123 label from `prefix` with a random suffix."""
    base = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")[: max_length - 7].rstrip("-") or "t"
    return f"{base}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(kube_api, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace for this test alone, named after it; deleted afterwards."""
    name = create_namespace(kube_api, unique_name(request.node.name.removeprefix("test_")[:40]))
    yield name
    delete_namespace(kube_api, name)


CRDS = ROOT / "crds"


def condition(obj: dict, kind: str) -> dict | None:
    for entry in (obj.get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return entry
    return None


@pytest.fixture(scope="session")
def crucible_crds(kube_api) -> list[dict]:
    """The CRDs of crds/ applied and Established; returns them as the API server has them."""
    names = []
    for path in sorted(CRDS.glob("*.yaml")):
        manifest = yaml.safe_load(path.read_text())
        apply(kube_api, manifest)
        names.append(manifest["metadata"]["name"])

    def established() -> list[dict] | None:
        crds = [
            get_json(kube_api, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}") for n in names
        ]
        ready = all((condition(crd, "Established") or {}).get("status") == "True" for crd in crds)
        return crds if ready else None

    return wait_for(established, timeout=30, what=f"{names} Established")
