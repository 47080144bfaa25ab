"""The thin API client: idempotent create, delete and apply, against the emulated API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import kmock
import kopf
import pytest

from crucible.operator.kube.client import LAST_APPLIED, ApiError, Kube, Ref, with_removals
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


async def test_a_rotated_token_logs_in_again_and_retries_once() -> None:
    """A 401 (the ServiceAccount token was rotated or revoked) is answered by logging in again, as kopf
    does for its own requests; a second 401 is an error, not a loop."""
    from aiohttp import web

    valid = {"token": "old"}
    seen: list[str] = []

    async def get_config_map(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != f"Bearer {valid['token']}":
            return web.json_response({"reason": "Unauthorized", "message": "Unauthorized"}, status=401)
        return web.json_response(config_map())

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/default/configmaps/c", get_config_map)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    logins: list[str] = []

    def relogin() -> kopf.ConnectionInfo:
        logins.append(valid["token"])
        return kopf.ConnectionInfo(server=server, scheme="Bearer", token=valid["token"])

    client = Kube()
    client.use(kopf.ConnectionInfo(server=server, scheme="Bearer", token="old"))
    client.relogin_with(relogin)
    try:
        assert (await client.get(Ref.of(config_map())))["data"] == {"k": "1"}
        valid["token"] = "new"  # rotated: the old token is refused from now on
        assert (await client.get(Ref.of(config_map())))["data"] == {"k": "1"}
        assert seen == ["Bearer old", "Bearer old", "Bearer new"]
        assert logins == ["new"]
        valid["token"] = "revoked"
        client.relogin_with(lambda: kopf.ConnectionInfo(server=server, scheme="Bearer", token="stale"))
        with pytest.raises(ApiError, match="401"):
            await client.get(Ref.of(config_map()))
    finally:
        await client.close()
        await runner.cleanup()
