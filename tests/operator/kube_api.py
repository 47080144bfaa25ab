"""A small asynchronous client for a real Kubernetes API server, for tests: requests with the
credentials of a kubeconfig (client certificate or token), and watches. Never part of the product."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
TOO_MANY_REQUESTS_RETRIES = 30


def resource_path(resource: str, namespace: str | None = None, name: str | None = None) -> str:
    """`apps/v1/deployments` (or `v1/pods`) -> its URL path, in `namespace` when given."""
    group_version, _, plural = resource.rpartition("/")
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    return f"{path}/{name}" if name else path


def _materialise(user: dict, key: str) -> str | None:
    """A kubeconfig's `client-certificate` (a path) or `client-certificate-data` (base64), as a path."""
    if user.get(key):
        return user[key]
    if user.get(f"{key}-data"):
        path = Path(tempfile.mkdtemp(prefix="kube-api-")) / key
        path.write_bytes(base64.b64decode(user[f"{key}-data"]))
        return str(path)
    return None


@dataclass
class KubeApi:
    """Requests to the server a kubeconfig names, as its current user."""

    kubeconfig: Path
    server: str = ""
    _headers: dict[str, str] = field(default_factory=dict)
    _ssl: ssl.SSLContext | None = None
    _session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        config = yaml.safe_load(Path(self.kubeconfig).read_text())
        context_name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.server = cluster["server"].rstrip("/")
        context_ssl = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            context_ssl.check_hostname = False
            context_ssl.verify_mode = ssl.CERT_NONE
        elif cluster.get("certificate-authority"):
            context_ssl.load_verify_locations(cluster["certificate-authority"])
        certificate = _materialise(user, "client-certificate")
        if certificate:
            context_ssl.load_cert_chain(certificate, _materialise(user, "client-key"))
        if user.get("token"):
            self._headers["Authorization"] = f"Bearer {user['token']}"
        self._ssl = context_ssl

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=50)
            self._session = aiohttp.ClientSession(self.server, connector=connector, headers=self._headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, path: str, body: object = None, content_type: str | None = None, **params: str
    ) -> tuple[int, dict]:
        """(status, decoded answer) of one request; errors are answers too (a test checks them)."""
        headers = {"Content-Type": content_type or "application/json"}
        data = None if body is None else json.dumps(body)
        for _ in range(TOO_MANY_REQUESTS_RETRIES):
            async with self.session.request(
                method, path, data=data, headers=headers, params=params
            ) as response:
                text = await response.text()
                if response.status != 429:
                    break
                # As client-go does: a resource just added (a CRD's storage still starting) or a
                # busy server asks to come back shortly.
                await asyncio.sleep(min(float(response.headers.get("Retry-After", 1)), 1.0))
        try:
            answer = json.loads(text) if text else {}
        except json.JSONDecodeError:
            answer = {"message": text}
        return response.status, answer

    async def call(
        self, method: str, path: str, body: object = None, content_type: str | None = None, **params: str
    ) -> dict:
        """One request that must succeed: its answer, or an AssertionError with the server's message."""
        status, answer = await self.request(method, path, body, content_type, **params)
        if status >= 300:
            raise AssertionError(f"{method} {path}: {status} {answer.get('message', answer)}")
        return answer

    async def get(self, path: str) -> dict | None:
        status, answer = await self.request("GET", path)
        if status == 404:
            return None
        if status >= 300:
            raise AssertionError(f"GET {path}: {status} {answer.get('message', answer)}")
        return answer

    async def watch(self, path: str, **params: str) -> AsyncIterator[dict]:
        """Every object at `path` (a collection) as ADDED events, a SYNCED event, then each change, for
        ever: the
        watch is resumed from the last resourceVersion seen when the server ends it, and the list
        read again when that version is too old."""
        version = ""
        while True:
            if not version:
                listed = await self.call("GET", path, **params)
                version = listed["metadata"]["resourceVersion"]
                for item in listed.get("items") or []:
                    yield {"type": "ADDED", "object": item}
                yield {"type": "SYNCED", "object": {}}  # everything that existed was listed
            query = {**params, "watch": "true", "resourceVersion": version, "allowWatchBookmarks": "true"}
            timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
            try:
                async with self.session.get(path, params=query, timeout=timeout) as response:
                    if response.status == 410:
                        version = ""
                        continue
                    response.raise_for_status()
                    async for line in response.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            if event["object"].get("code") == 410:
                                version = ""
                            break
                        version = event["object"]["metadata"].get("resourceVersion") or version
                        if event["type"] != "BOOKMARK":
                            yield event
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
                await asyncio.sleep(0.1)


@dataclass
class Mirror:
    """What a namespace holds of some resources, kept current by watches: tests read it at once,
    without a request, and see every version of an object the server sent in `versions`."""

    api: KubeApi
    namespace: str | None
    resources: tuple[str, ...]
    objects: dict[str, dict[str, dict]] = field(default_factory=dict)  # resource -> name -> body
    versions: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _synced: dict[str, asyncio.Event] = field(default_factory=dict)

    async def start(self) -> None:
        for resource in self.resources:
            self.objects[resource] = {}
            self._synced[resource] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._follow(resource)))
        for event in self._synced.values():
            await asyncio.wait_for(event.wait(), 30)

    async def _follow(self, resource: str) -> None:
        async for event in self.api.watch(resource_path(resource, self.namespace)):
            if event["type"] == "SYNCED":
                self._synced[resource].set()
            else:
                self._record(event["type"], resource, event["object"])

    def _record(self, kind: str, resource: str, body: dict) -> None:
        name = body["metadata"]["name"]
        if kind == "DELETED":
            self.objects[resource].pop(name, None)
        else:
            self.objects[resource][name] = body
        self.versions.setdefault((resource, name), []).append(body)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def failures(self) -> list[BaseException]:
        return [t.exception() for t in self._tasks if t.done() and not t.cancelled() and t.exception()]
