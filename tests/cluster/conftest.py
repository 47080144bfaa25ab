"""Fixtures for end-to-end tests on the real control plane: a namespace per test, the test kubelet
running its pods, the operator logged in as the chart's ServiceAccount, a stand-in for kube-proxy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from tests.operator.kube_api import KubeApi
from tests.operator.node_agent import NodeAgent, register_nodes
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import RealCluster, operator_kubeconfig
from tests.operator.service_proxy import ServiceProxy, endpoint_slice_backends
from tests.packaging.chart import HELM, render


async def _with_admin(kubeconfig: Path, action):  # type: ignore[no-untyped-def]
    api = KubeApi(kubeconfig)
    try:
        return await action(api)
    finally:
        await api.close()


@pytest.fixture(scope="session")
def test_nodes(control_plane_kubeconfig: Path) -> list[str]:
    """The Nodes of the `cpu` and `gpu` pools, registered once for the session."""
    return asyncio.run(_with_admin(control_plane_kubeconfig, register_nodes))


@pytest.fixture(scope="session")
def operator_identity(control_plane_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig for the chart's ServiceAccount, bound to the chart's rendered RBAC (default values)."""
    if not HELM.exists():
        pytest.skip("helm is not in .tools/bin (scripts/fetch-tools.sh): the chart's RBAC cannot be rendered")
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    manifests = render({})
    return asyncio.run(
        _with_admin(control_plane_kubeconfig, lambda api: operator_kubeconfig(api, manifests, path))
    )


@pytest.fixture
async def cluster(control_plane_kubeconfig: Path, test_nodes: list[str]) -> AsyncIterator[RealCluster]:
    api = KubeApi(control_plane_kubeconfig)
    namespace = await RealCluster.new_namespace(api)
    yield namespace
    failures = namespace.mirror.failures()
    await namespace.close()
    await api.close()
    assert not failures, failures


@pytest.fixture
def operator_config(tmp_path: Path) -> Path:
    path = tmp_path / "operator.yaml"
    path.write_text(yaml.safe_dump({"artifacts": {"claim": "artifacts"}}))
    return path


@pytest.fixture
async def operator(
    cluster: RealCluster, operator_identity: Path, operator_config: Path
) -> AsyncIterator[OperatorThread]:
    thread = OperatorThread(
        kubeconfig=operator_identity, namespaces=[cluster.namespace], config_path=operator_config
    )
    await thread.start()
    yield thread
    await thread.stop()
    assert not thread.errors, thread.errors


async def _kubelet(
    cluster: RealCluster, workdir: Path, instant: bool, run_servers: bool
) -> AsyncIterator[NodeAgent]:
    agent = NodeAgent(cluster.api, cluster.namespace, workdir, instant=instant, run_servers=run_servers)
    await agent.start()
    yield agent
    await agent.stop()


@pytest.fixture
async def kubelet(cluster: RealCluster, tmp_path: Path) -> AsyncIterator[NodeAgent]:
    """Runs trainer pods for real, as local processes; server pods are ready at once, with no process."""
    async for agent in _kubelet(cluster, tmp_path / "node", instant=False, run_servers=False):
        yield agent


@pytest.fixture
async def instant_kubelet(cluster: RealCluster, tmp_path: Path) -> AsyncIterator[NodeAgent]:
    """Finishes each trainer pod at once with a successful result; server pods are ready at once."""
    async for agent in _kubelet(cluster, tmp_path / "node", instant=True, run_servers=False):
        yield agent


@pytest.fixture
async def serving_kubelet(cluster: RealCluster, tmp_path: Path) -> AsyncIterator[NodeAgent]:
    """Finishes trainer pods at once (with the artifacts a test gives it) and runs every server pod as
    a real `crucible serve` process."""
    async for agent in _kubelet(cluster, tmp_path / "node", instant=True, run_servers=True):
        yield agent


@pytest.fixture
async def training_and_serving_kubelet(cluster: RealCluster, tmp_path: Path) -> AsyncIterator[NodeAgent]:
    """Runs trainer pods and server pods for real, as local processes."""
    async for agent in _kubelet(cluster, tmp_path / "node", instant=False, run_servers=True):
        yield agent


@pytest.fixture
async def services(cluster: RealCluster) -> AsyncIterator[ServiceProxy]:
    """Reach a Service as a client in the cluster would: `await services.url("md-server")`."""
    proxy = ServiceProxy(endpoint_slice_backends(cluster), cluster.namespace)
    yield proxy
    await proxy.close()
