"""Fixtures for end-to-end tests on the real control plane: a namespace per test, the test kubelet
running its pods, the operator logged in as the chart's ServiceAccount, a stand-in for kube-proxy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.cluster.chart import operator_kubeconfig
from tests.cluster.controlplane import ControlPlane
from tests.cluster.operator_config import ARTIFACTS_CLAIM, write_operator_config
from tests.operator.kube_api import KubeApi
from tests.operator.kubelet_logs import ContainerLogServer
from tests.operator.node_agent import NodeAgent, register_nodes
from tests.operator.operator_thread import OperatorThread
from tests.operator.real_cluster import RealCluster
from tests.operator.service_proxy import ServiceProxy, endpoint_slice_backends
from tests.packaging.chart import HELM


async def _register_nodes(kubeconfig: Path, kubelet_port: int) -> list[str]:
    api = KubeApi(kubeconfig)
    try:
        return await register_nodes(api, kubelet_port=kubelet_port)
    finally:
        await api.close()


@pytest.fixture(scope="session")
def kubelet_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerLogServer]:
    """The test Nodes' kubelet endpoint for container logs (pods/log, `kubectl logs`), for the session."""
    server = ContainerLogServer(tmp_path_factory.mktemp("kubelet-logs")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def test_nodes(
    cluster_controllers: ControlPlane, crucible_crds: list[dict], kubelet_logs: ContainerLogServer
) -> list[str]:
    """The control plane with its controllers and our CRDs, and the Nodes of the `cpu` and `gpu` pools
    (registered once for the session), whose container logs the API server reads from `kubelet_logs`."""
    return asyncio.run(_register_nodes(cluster_controllers.kubeconfig, kubelet_logs.port))


@pytest.fixture
def operator_identity(
    cluster_controllers: ControlPlane, kube_api, cluster: RealCluster, tmp_path: Path
) -> Path:  # type: ignore[no-untyped-def]
    """A kubeconfig for the chart's ServiceAccount (in the test's namespace) with a token bound to the
    chart's rendered ClusterRole: a permission the chart lacks fails the test."""
    if not HELM.exists():
        pytest.skip("helm is not in .tools/bin (scripts/fetch-tools.sh): the chart's RBAC cannot be rendered")
    return operator_kubeconfig(
        cluster_controllers, kube_api, cluster.namespace, tmp_path / "operator-kubeconfig"
    )


@pytest.fixture
async def cluster(cluster_controllers: ControlPlane, test_nodes: list[str]) -> AsyncIterator[RealCluster]:
    api = KubeApi(cluster_controllers.kubeconfig)
    namespace = await RealCluster.new_namespace(api)
    yield namespace
    failures = namespace.mirror.failures()
    await namespace.close()
    await api.close()
    assert not failures, failures


@pytest.fixture
def operator_config(tmp_path: Path) -> Path:
    return write_operator_config(tmp_path)


@pytest.fixture
async def operator(
    cluster: RealCluster, operator_identity: Path, operator_config: Path, tmp_path: Path
) -> AsyncIterator[OperatorThread]:
    """The operator as the chart's ServiceAccount, watching the test's namespace, where the claim its
    configuration names for artifacts exists."""
    await cluster.bound_claim(ARTIFACTS_CLAIM, tmp_path / "node" / "volumes" / ARTIFACTS_CLAIM)
    thread = OperatorThread(
        kubeconfig=operator_identity, namespaces=[cluster.namespace], config_path=operator_config
    )
    await thread.start()
    yield thread
    await thread.stop()
    assert not thread.errors, thread.errors


async def _kubelet(
    cluster: RealCluster, workdir: Path, instant: bool, run_servers: bool, logs: ContainerLogServer
) -> AsyncIterator[NodeAgent]:
    agent = NodeAgent(
        cluster.api, cluster.namespace, workdir, instant=instant, run_servers=run_servers, logs=logs
    )
    await agent.start()
    yield agent
    await agent.stop()


@pytest.fixture
async def kubelet(
    cluster: RealCluster, tmp_path: Path, kubelet_logs: ContainerLogServer
) -> AsyncIterator[NodeAgent]:
    """Runs trainer pods for real, as local processes; server pods are ready at once, with no process."""
    async for agent in _kubelet(
        cluster, tmp_path / "node", instant=False, run_servers=False, logs=kubelet_logs
    ):
        yield agent


@pytest.fixture
async def instant_kubelet(
    cluster: RealCluster, tmp_path: Path, kubelet_logs: ContainerLogServer
) -> AsyncIterator[NodeAgent]:
    """Finishes each trainer pod at once with a successful result; server pods are ready at once."""
    async for agent in _kubelet(
        cluster, tmp_path / "node", instant=True, run_servers=False, logs=kubelet_logs
    ):
        yield agent


@pytest.fixture
async def serving_kubelet(
    cluster: RealCluster, tmp_path: Path, kubelet_logs: ContainerLogServer
) -> AsyncIterator[NodeAgent]:
    """Finishes trainer pods at once (with the artifacts a test gives it) and runs every server pod as
    a real `crucible serve` process."""
    async for agent in _kubelet(
        cluster, tmp_path / "node", instant=True, run_servers=True, logs=kubelet_logs
    ):
        yield agent


@pytest.fixture
async def training_and_serving_kubelet(
    cluster: RealCluster, tmp_path: Path, kubelet_logs: ContainerLogServer
) -> AsyncIterator[NodeAgent]:
    """Runs trainer pods and server pods for real, as local processes."""
    async for agent in _kubelet(
        cluster, tmp_path / "node", instant=False, run_servers=True, logs=kubelet_logs
    ):
        yield agent


@pytest.fixture
async def services(cluster: RealCluster) -> AsyncIterator[ServiceProxy]:
    """Reach a Service as a client in the cluster would: `await services.url("md-server")`."""
    proxy = ServiceProxy(endpoint_slice_backends(cluster), cluster.namespace)
    yield proxy
    await proxy.close()
