"""The pod network of the test kubelet. A pod's process listens on a loopback address of its own
(127.n.a.b), but the API server refuses loopback addresses in EndpointSlices, so the pod's status
reports the matching address of a pod range (10.n.a.b), as a CNI plugin would assign. This module
routes connections to reported pod addresses onto the loopback address behind them, for every asyncio
connection in this test process (the operator's canary analysis reading a pod's /metrics, the test's
service proxy, probes): what the node's routes do on a cluster. Only addresses of pods the test
kubelet runs are routed; every other connection is left alone. Never part of the product."""

from __future__ import annotations

import asyncio
import functools
import threading

_routes: dict[str, str] = {}
_lock = threading.Lock()
_installed = False


def pod_address(local: str) -> str:
    """127.n.a.b -> 10.n.a.b: the address the pod's status reports for a process on `local`."""
    return "10." + local.split(".", 1)[1]


def route(pod_ip: str, local: str) -> None:
    _install()
    with _lock:
        _routes[pod_ip] = local


def unroute(pod_ip: str) -> None:
    with _lock:
        _routes.pop(pod_ip, None)


def local_address(host: object) -> object:
    with _lock:
        return _routes.get(host, host) if isinstance(host, str) else host


def _install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        original = asyncio.base_events.BaseEventLoop.create_connection

        @functools.wraps(original)
        async def create_connection(self, protocol_factory, host=None, port=None, *args, **kwargs):  # type: ignore[no-untyped-def]
            return await original(self, protocol_factory, local_address(host), port, *args, **kwargs)

        asyncio.base_events.BaseEventLoop.create_connection = create_connection  # type: ignore[method-assign]

        # aiohttp connects its own socket first (happy eyeballs), then hands it over.
        selector_loop = asyncio.selector_events.BaseSelectorEventLoop
        original_sock_connect = selector_loop.sock_connect

        @functools.wraps(original_sock_connect)
        async def sock_connect(self, sock, address):  # type: ignore[no-untyped-def]
            if isinstance(address, tuple) and address:
                address = (local_address(address[0]), *address[1:])
            return await original_sock_connect(self, sock, address)

        selector_loop.sock_connect = sock_connect  # type: ignore[method-assign]
        _installed = True
