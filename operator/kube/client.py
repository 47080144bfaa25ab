"""One thin, idempotent client for the Kubernetes API, on the same credentials kopf logged in with.

Idempotence is what makes the operator restart-safe: a create that meets 409 fetches what is there,
a delete that meets 404 is done, an apply changes an object only when its desired form changed.
Writes are JSON merge patches; a status goes to the /status subresource.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from crucible import API_GROUP

if TYPE_CHECKING:
    import kopf

# The spec this operator last applied, as kubectl keeps its last-applied-configuration: a key in it
# that the new spec lacks is removed (a merge patch alone never removes what it does not name).
LAST_APPLIED = f"{API_GROUP}/last-applied-spec"
MERGE_PATCH = "application/merge-patch+json"
PLURALS = {
    "ConfigMap": "configmaps",
    "Event": "events",
    "Pod": "pods",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "Service": "services",
    "Job": "jobs",
    "Deployment": "deployments",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "TrainingRun": "trainingruns",
    "ModelDeployment": "modeldeployments",
    "TuningJob": "tuningjobs",
}


class ApiError(Exception):
    """A request the API server refused (other than the 404/409 that idempotence absorbs)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Ref:
    """Which object: enough to build its URL."""

    api_version: str
    kind: str
    namespace: str
    name: str | None = None

    @classmethod
    def of(cls, body: dict) -> Ref:
        metadata = body["metadata"]
        return cls(body["apiVersion"], body["kind"], metadata["namespace"], metadata.get("name"))

    def path(self, subresource: str | None = None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        path = f"{prefix}/namespaces/{self.namespace}/{PLURALS[self.kind]}"
        if self.name:
            path += f"/{self.name}"
        return f"{path}/{subresource}" if subresource else path


def with_removals(desired: dict, last_applied: dict) -> dict:
    """`desired` plus a null for every key of `last_applied` it no longer has (nested mappings too)."""
    patch = dict(desired)
    for key, old in last_applied.items():
        if key not in desired:
            patch[key] = None
        elif isinstance(old, dict) and isinstance(desired[key], dict):
            patch[key] = with_removals(desired[key], old)
    return patch


def matches(body: dict, labels: dict[str, str]) -> bool:
    own = body.get("metadata", {}).get("labels") or {}
    return all(own.get(key) == value for key, value in labels.items())


class Kube:
    """Async API access. `use()` hands it kopf's credentials; the session is made on first use.

    Credentials expire (a projected ServiceAccount token is rotated every hour or so): a request answered
    401 logs in again through `relogin`, when given, and is sent once more with the new credentials."""

    def __init__(self, timeout: float = 30) -> None:
        self._info: kopf.ConnectionInfo | None = None
        self._session: aiohttp.ClientSession | None = None
        self._retired: list[aiohttp.ClientSession] = []
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._relogin: Callable[[], kopf.ConnectionInfo] | None = None

    def relogin_with(self, relogin: Callable[[], kopf.ConnectionInfo]) -> None:
        """How to get fresh credentials when the API answers 401 (the token was rotated or revoked)."""
        self._relogin = relogin

    def use(self, info: kopf.ConnectionInfo) -> None:
        """New credentials (kopf logged in again): the next request opens a session with them."""
        self._info = info
        if self._session is not None:
            self._retired.append(self._session)
            self._session = None

    async def close(self) -> None:
        for session in [*self._retired, *filter(None, [self._session])]:
            await session.close()
        self._retired.clear()
        self._session = None

    async def _open(self) -> tuple[aiohttp.ClientSession, str]:
        if self._info is None:
            raise RuntimeError("no credentials yet: the operator's login handler has not run")
        while self._retired:
            await self._retired.pop().close()
        if self._session is None:
            ssl = self._info.as_ssl_context() if self._info.server.startswith("https") else False
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl, limit=64),
                headers={"Accept": "application/json", **self._info.as_http_headers()},
                timeout=self._timeout,
            )
        return self._session, self._info.server.rstrip("/")

    async def _request(
        self, method: str, path: str, body: Any = None, params: dict | None = None, patch: bool = False
    ) -> dict | None:
        """The decoded response, or None on 404. Raises ApiError on other failures."""
        headers = {"Content-Type": MERGE_PATCH if patch else "application/json"}
        data = None if body is None else json.dumps(body)
        for attempt in range(2):
            session, server = await self._open()
            async with session.request(
                method, server + path, data=data, params=params, headers=headers
            ) as resp:
                if resp.status == 401 and attempt == 0 and self._relogin is not None:
                    self.use(self._relogin())  # then once more, with the new credentials
                    continue
                if resp.status == 404:
                    return None
                document = await resp.json(content_type=None) if resp.content_length != 0 else {}
                if resp.status >= 400:
                    document = document if isinstance(document, dict) else {}
                    raise ApiError(resp.status, document.get("reason", ""), document.get("message", ""))
                return document
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def get(self, ref: Ref) -> dict | None:
        return await self._request("GET", ref.path())

    async def log(self, pod: Ref, container: str, tail_lines: int) -> str | None:
        """The last `tail_lines` lines a pod's container wrote (pods/log); None when the pod is gone."""
        session, server = await self._open()
        params = {"container": container, "tailLines": str(tail_lines)}
        async with session.get(server + pod.path("log"), params=params) as resp:
            if resp.status == 404:
                return None
            if resp.status >= 400:
                raise ApiError(resp.status, resp.reason or "", (await resp.text())[:300])
            return await resp.text()

    async def list(
        self, ref: Ref, labels: dict[str, str], fields: dict[str, str] | None = None
    ) -> list[dict]:
        """Objects of a kind in a namespace with all of `labels` (checked here too, to be safe) and, when
        given, the `fields` values (a field selector, e.g. the object an Event is about)."""
        params = {"labelSelector": ",".join(f"{key}={value}" for key, value in labels.items())}
        if fields:
            params["fieldSelector"] = ",".join(f"{key}={value}" for key, value in fields.items())
        document = await self._request("GET", ref.path(), params=params) or {}
        return [item for item in document.get("items", []) if matches(item, labels)]

    async def create(self, manifest: dict) -> tuple[dict, bool]:
        """(the object, whether it was created now). Meeting 409, returns the one already there."""
        ref = Ref.of(manifest)
        try:
            created = await self._request(
                "POST", Ref(ref.api_version, ref.kind, ref.namespace).path(), manifest
            )
        except ApiError as error:
            if error.status != 409:
                raise
            existing = await self.get(ref)
            if existing is None:  # deleted in between: the caller's retry will create it
                raise
            return existing, False
        return created or manifest, True

    async def apply(self, manifest: dict) -> dict:
        """Create the object, or bring the existing one's spec to `manifest` when it changed."""
        applied = json.dumps(manifest["spec"], sort_keys=True, separators=(",", ":"))
        desired = json.loads(json.dumps(manifest))
        desired["metadata"].setdefault("annotations", {})[LAST_APPLIED] = applied
        ref = Ref.of(desired)
        existing = await self.get(ref)
        if existing is None:
            created, _ = await self.create(desired)
            return created
        previous = (existing["metadata"].get("annotations") or {}).get(LAST_APPLIED)
        if previous == applied:
            return existing
        kept = ("labels", "annotations", "ownerReferences")
        metadata = {key: value for key, value in desired["metadata"].items() if key in kept}
        spec = with_removals(desired["spec"], json.loads(previous) if previous else {})
        return await self.patch(ref, {"metadata": metadata, "spec": spec}) or existing

    async def patch(self, ref: Ref, patch: dict, subresource: str | None = None) -> dict | None:
        """Merge-patch; None when the object is gone."""
        return await self._request("PATCH", ref.path(subresource), patch, patch=True)

    async def patch_status(self, ref: Ref, status: dict) -> dict | None:
        return await self.patch(ref, {"status": status}, subresource="status")

    async def delete(self, ref: Ref) -> None:
        """Gone already counts as done. Dependents go with it (background cascading)."""
        await self._request("DELETE", ref.path(), {"propagationPolicy": "Background"})
