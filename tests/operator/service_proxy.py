"""A test stand-in for kube-proxy: each Service asked for gets a local listener that sends every request
to one of the ready pods its selector matches, round robin, as a ClusterIP does. Endpoints come from
the test Deployment controller (ready, not terminating). Never part of the product."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.operator.fake_cluster import Cluster
from tests.operator.fake_deployments import FakeDeploymentController

SERVICES = "v1/services"
# Hop-by-hop and length headers are the proxy's own business on each side.
NOT_FORWARDED = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class ServiceProxy:
    cluster: Cluster
    servers: FakeDeploymentController
    _runners: list[web.AppRunner] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None

    async def url(self, service: str, namespace: str = "default") -> str:
        """The base URL of a listener standing for the Service `service` (which must exist)."""
        if self._session is None:
            # A connection per request: a pod that stops takes no pooled connection with it.
            connector = aiohttp.TCPConnector(force_close=True)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=30)
            )
        turns = itertools.count()

        async def forward(request: web.Request) -> web.StreamResponse:
            body = self.cluster.get(SERVICES, service, namespace)
            if body is None:
                return web.Response(status=503, text=f"service {namespace}/{service} does not exist")
            endpoints = self.servers.endpoints(namespace, body["spec"].get("selector") or {})
            if not endpoints:
                return web.Response(status=503, text=f"service {namespace}/{service} has no ready endpoints")
            pod = endpoints[next(turns) % len(endpoints)]
            port = pod.port(body["spec"]["ports"][0].get("targetPort", body["spec"]["ports"][0]["port"]))
            headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
            assert self._session is not None
            try:
                async with self._session.request(
                    request.method,
                    f"http://{pod.ip}:{port}{request.rel_url}",
                    headers=headers,
                    data=await request.read(),
                ) as answer:
                    content = await answer.read()
            except aiohttp.ClientError as error:
                # A real proxy resets the client's connection; a test wants to know which pod failed.
                return web.Response(status=502, text=f"{pod.name} ({pod.ip}): {error!r}")
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in NOT_FORWARDED}
            kept["X-Served-By"] = pod.name
            return web.Response(status=answer.status, body=content, headers=kept)

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        if self._session is not None:
            await self._session.close()
