"""Fixtures for the operator's tests on the emulator (what a real API server cannot play: see
test_operator_restart.py): the emulated API, its test kubelet, the operator itself. End-to-end tests on
the real control plane have theirs in tests/cluster/conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import kmock
import pytest
import yaml

from tests.operator.fake_cluster import NAMESPACE, Cluster, write_kubeconfig
from tests.operator.fake_kubelet import FakeKubelet
from tests.operator.operator_thread import OperatorThread


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
async def operator(
    cluster: Cluster, kubeconfig: Path, operator_config: Path
) -> AsyncIterator[OperatorThread]:
    await cluster.bound_claim("artifacts")
    thread = OperatorThread(kubeconfig=kubeconfig, namespaces=[NAMESPACE], config_path=operator_config)
    await thread.start()
    yield thread
    await thread.stop()
    assert not thread.errors, thread.errors


async def _kubelet(cluster: Cluster, workdir: Path, instant: bool) -> AsyncIterator[FakeKubelet]:
    kubelet = FakeKubelet(str(cluster.url).rstrip("/"), workdir, instant=instant)
    task = asyncio.create_task(kubelet.run())
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
