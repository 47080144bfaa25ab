"""Fixtures for the operator's tests: the emulated API, the test kubelet, the operator itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest
import yaml

from tests.operator.fake_cluster import NAMESPACE, Cluster, eventually, write_kubeconfig
from tests.operator.fake_kubelet import FakeKubelet
from tests.operator.operator_thread import OperatorThread
from tests.operator.service_proxy import ServiceProxy, emulated_backends


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster() as emulator, kmock.Server(emulator):
        emulator.declare_builtins_and_crds()
        yield emulator


@pytest.fixture
def kubeconfig(cluster: Cluster, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", str(cluster.url).rstrip("/"))


@pytest.fixture
def operator_config(tmp_path: Path) -> Path:
    path = tmp_path / "operator.yaml"
    path.write_text(yaml.safe_dump({"artifacts": {"claim": "artifacts"}}))
    return path


@pytest.fixture
async def operator(kubeconfig: Path, operator_config: Path) -> AsyncIterator[OperatorThread]:
    thread = OperatorThread(kubeconfig=kubeconfig, namespaces=[NAMESPACE], config_path=operator_config)
    await thread.start()
    yield thread
    await thread.stop()
    assert not thread.errors, thread.errors


async def _kubelet(
    cluster: Cluster, workdir: Path, instant: bool, run_servers: bool = False
) -> AsyncIterator[FakeKubelet]:
    kubelet = FakeKubelet(str(cluster.url).rstrip("/"), workdir, instant=instant, run_servers=run_servers)
    task = asyncio.create_task(kubelet.run(cluster))
    yield kubelet
    await kubelet.stop()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


@pytest.fixture
async def kubelet(cluster: Cluster, tmp_path: Path) -> AsyncIterator[FakeKubelet]:
    """Runs trainer Jobs for real, as local processes."""
    async for running in _kubelet(cluster, tmp_path / "node", instant=False):
        yield running


@pytest.fixture
async def instant_kubelet(cluster: Cluster, tmp_path: Path) -> AsyncIterator[FakeKubelet]:
    """Finishes each trainer Job at once with a successful result."""
    async for running in _kubelet(cluster, tmp_path / "node", instant=True):
        yield running


@pytest.fixture
async def serving_kubelet(cluster: Cluster, tmp_path: Path) -> AsyncIterator[FakeKubelet]:
    """Finishes trainer Jobs at once (with the artifacts a test gives it) and runs every server
    Deployment's replicas as real `crucible serve` processes."""
    async for running in _kubelet(cluster, tmp_path / "node", instant=True, run_servers=True):
        yield running


@pytest.fixture
async def training_and_serving_kubelet(cluster: Cluster, tmp_path: Path) -> AsyncIterator[FakeKubelet]:
    """Runs trainer Jobs and server replicas for real, as local processes."""
    async for running in _kubelet(cluster, tmp_path / "node", instant=False, run_servers=True):
        yield running


@pytest.fixture
async def services(cluster: Cluster, serving_kubelet: FakeKubelet) -> AsyncIterator[ServiceProxy]:
    """Reach a Service as a client in the cluster would: `await services.url("md-server")`."""
    await eventually(lambda: serving_kubelet.servers is not None, 10, "the Deployment controller runs")
    assert serving_kubelet.servers is not None
    proxy = ServiceProxy(emulated_backends(cluster, serving_kubelet.servers))
    yield proxy
    await proxy.close()
