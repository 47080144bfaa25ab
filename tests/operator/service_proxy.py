"""A test stand-in for kube-proxy: each Service asked for gets a local listener that sends every request
to one of the Service's ready endpoints, round robin, as a ClusterIP does. The endpoints are those of
the Service's EndpointSlices, which the real EndpointSlice controller keeps from the pods' readiness.
Never part of the product."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

if TYPE_CHECKING:
    from tests.operator.real_cluster import RealCluster

SERVICES = "v1/services"
# Hop-by-hop and length headers are the proxy's own business on each side.
NOT_FORWARDED = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass(frozen=True)
class Endpoint:
    pod: str
    ip: str
    port: int


# (namespace, service) -> its ready endpoints, or why there are none.
Backends = Callable[[str, str], "list[Endpoint] | str"]


def endpoint_slice_backends(cluster: RealCluster) -> Backends:
    """On a real control plane: the ready endpoints of the Service's EndpointSlices."""

    def backends(namespace: str, service: str) -> list[Endpoint] | str:
        body = cluster.get(SERVICES, service, namespace)
        if body is None:
            return f"service {namespace}/{service} does not exist"
        port_name = body["spec"]["ports"][0].get("name", "")
        found = []
        for endpoint_slice in cluster.objects_of("discovery.k8s.io/v1/endpointslices").values():
            if endpoint_slice["metadata"].get("labels", {}).get("kubernetes.io/service-name") != service:
                continue
            ports = [p["port"] for p in endpoint_slice.get("ports") or [] if p.get("name", "") == port_name]
            for endpoint in endpoint_slice.get("endpoints") or []:
                conditions = endpoint.get("conditions") or {}
                if ports and conditions.get("ready") and not conditions.get("terminating"):
                    pod = (endpoint.get("targetRef") or {}).get("name", "")
                    found.append(Endpoint(pod, endpoint["addresses"][0], ports[0]))
        return sorted(found, key=lambda endpoint: endpoint.pod)

    return backends


@dataclass
class ServiceProxy:
    backends: Backends
    namespace: str = "default"
    _runners: list[web.AppRunner] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None

    async def url(self, service: str, namespace: str | None = None) -> str:
        """The base URL of a listener standing for the Service `service` (which must exist)."""
        namespace = namespace or self.namespace
        if self._session is None:
            # A connection per request: a pod that stops takes no pooled connection with it.
            connector = aiohttp.TCPConnector(force_close=True)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=30)
            )
        turns = itertools.count()

        async def forward(request: web.Request) -> web.StreamResponse:
            endpoints = self.backends(namespace, service)
            if isinstance(endpoints, str) or not endpoints:
                reason = endpoints or f"service {namespace}/{service} has no ready endpoints"
                return web.Response(status=503, text=reason)
            pod = endpoints[next(turns) % len(endpoints)]
            headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
            assert self._session is not None
            try:
                async with self._session.request(
                    request.method,
                    f"http://{pod.ip}:{pod.port}{request.rel_url}",
                    headers=headers,
                    data=await request.read(),
                ) as answer:
                    content = await answer.read()
            except aiohttp.ClientError as error:
                # A real proxy resets the client's connection; a test wants to know which pod failed.
                return web.Response(status=502, text=f"{pod.pod} ({pod.ip}): {error!r}")
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in NOT_FORWARDED}
            kept["X-Served-By"] = pod.pod
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
