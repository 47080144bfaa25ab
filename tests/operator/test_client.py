"""The thin API client: idempotent create, delete and apply, against the emulated API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import kmock
import kopf
import pytest

from crucible.operator.kube.client import LAST_APPLIED, Kube, Ref, with_removals
from tests.operator.fake_cluster import Cluster


@pytest.fixture
async def kube(cluster: Cluster) -> AsyncIterator[Kube]:
    client = Kube()
    client.use(kopf.ConnectionInfo(server=str(cluster.url)))
    yield client
    await client.close()


def config_map(name: str = "c", value: str = "1") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"k": value},
    }


def service(selector: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": "default", "labels": {"a": "b"}},
        "spec": {"selector": selector, "ports": [{"port": 80}]},
    }


def test_with_removals_nulls_what_is_no_longer_wanted() -> None:
    last = {"template": {"nodeSelector": {"gpu": "yes"}, "image": "x"}, "replicas": 2}
    assert with_removals({"template": {"image": "y"}}, last) == {
        "template": {"image": "y", "nodeSelector": None},
        "replicas": None,
    }


async def test_create_meets_409_and_returns_what_is_there(kube: Kube) -> None:
    first, created = await kube.create(config_map(value="1"))
    again, created_again = await kube.create(config_map(value="2"))
    assert (created, created_again) == (True, False)
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    assert again["data"] == {"k": "1"}


async def test_delete_of_something_gone_is_done(kube: Kube, cluster: Cluster) -> None:
    await kube.create(config_map())
    await kube.delete(Ref.of(config_map()))
    await kube.delete(Ref.of(config_map()))
    assert cluster.get("v1/configmaps", "c") is None
    assert await kube.get(Ref.of(config_map())) is None


async def test_apply_changes_only_what_changed_and_removes_dropped_keys(kube: Kube, cluster: Cluster) -> None:
    await kube.apply(service({"app": "x", "track": "stable"}))
    patches = len(cluster.requests)
    await kube.apply(service({"app": "x", "track": "stable"}))
    assert not any(r.method == kmock.method.PATCH for r in cluster.requests[patches:])
    await kube.apply(service({"app": "x"}))
    stored = cluster.get("v1/services", "s")
    assert stored["spec"]["selector"] == {"app": "x"}
    assert stored["metadata"]["annotations"][LAST_APPLIED] == '{"ports":[{"port":80}],"selector":{"app":"x"}}'


async def test_list_filters_by_labels(kube: Kube) -> None:
    await kube.create(
        {**config_map("one"), "metadata": {**config_map("one")["metadata"], "labels": {"x": "1"}}}
    )
    await kube.create(config_map("two"))
    found = await kube.list(Ref("v1", "ConfigMap", "default"), {"x": "1"})
    assert [item["metadata"]["name"] for item in found] == ["one"]
