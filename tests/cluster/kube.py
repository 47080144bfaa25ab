"""Small helpers to talk to the real API server with `kubernetes.client`: server-side apply of any
manifest (its REST path found by discovery), the API server's refusal as message and causes, waits."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
FIELD_MANAGER = "crucible-tests"


@dataclass(frozen=True)
class Resource:
    plural: str
    namespaced: bool


_discovered: dict[tuple[int, str], dict[str, Resource]] = {}


def _group_path(api_version: str) -> str:
    return f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"


def request(
    api,
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    body: Any = None,
    content_type: str | None = None,
) -> Any:
    """One API request as `api`'s user; the decoded JSON answer, ApiException on an error status."""
    from kubernetes.client import ApiException

    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    serialized = api.param_serialize(
        method=method, resource_path=path, query_params=query or [], header_params=headers, body=body,
        auth_settings=["BearerToken"],
    )  # fmt: skip
    response = api.call_api(*serialized)
    response.read()
    if not 200 <= response.status < 300:
        raise ApiException(http_resp=response)
    return json.loads(response.data)


def get_json(api, path: str, query: list[tuple[str, str]] | None = None) -> Any:
    return request(api, "GET", path, query)


def resource(api, api_version: str, kind: str) -> Resource:
    """The resource serving `kind` in `api_version` (discovery, cached; refreshed once on a miss, as a
    CRD may have just been established)."""
    key = (id(api), api_version)
    for _ in range(2):
        if key not in _discovered or kind not in _discovered[key]:
            listing = get_json(api, _group_path(api_version))
            _discovered[key] = {
                entry["kind"]: Resource(entry["name"], entry["namespaced"])
                for entry in listing["resources"]
                if "/" not in entry["name"]
            }
        if kind in _discovered[key]:
            return _discovered[key][kind]
    raise LookupError(f"the API server serves no {kind} in {api_version}")


def collection_path(api, manifest: dict, namespace: str | None = None) -> str:
    found = resource(api, manifest["apiVersion"], manifest["kind"])
    path = _group_path(manifest["apiVersion"])
    if found.namespaced:
        path += f"/namespaces/{manifest['metadata'].get('namespace') or namespace}"
    return f"{path}/{found.plural}"


def object_path(api, manifest: dict, namespace: str | None = None) -> str:
    return f"{collection_path(api, manifest, namespace)}/{manifest['metadata']['name']}"


def create(api, manifest: dict, namespace: str | None = None) -> dict:
    """POST the manifest (what `create` permission allows; server-side apply needs `patch`)."""
    return request(api, "POST", collection_path(api, manifest, namespace), body=manifest)


def apply(api, manifest: dict, namespace: str | None = None, *, dry_run: bool = False) -> dict:
    """Server-side apply of one manifest (as `kubectl apply --server-side --force-conflicts`)."""
    query = [("fieldManager", FIELD_MANAGER), ("force", "true"), ("fieldValidation", "Strict")]
    if dry_run:
        query.append(("dryRun", "All"))
    return request(api, "PATCH", object_path(api, manifest, namespace), query, manifest,
                   "application/apply-patch+yaml")  # fmt: skip


@dataclass(frozen=True)
class Refusal:
    """What the API server said when it refused an object (a Status)."""

    code: int
    reason: str
    message: str
    causes: list[dict]

    def fields(self) -> list[str]:
        return [cause.get("field", "") for cause in self.causes]

    def cause_messages(self) -> list[str]:
        return [cause.get("message", "") for cause in self.causes]


def refusal(api, manifest: dict, namespace: str | None = None) -> Refusal | None:
    """Apply `manifest` (dry run); the refusal, or None when the API server accepts it."""
    from kubernetes.client import ApiException

    try:
        apply(api, manifest, namespace, dry_run=True)
    except ApiException as error:
        status = json.loads(error.body)
        details = status.get("details") or {}
        return Refusal(status.get("code", error.status), status.get("reason", ""), status.get("message", ""),
                       details.get("causes") or [])  # fmt: skip
    return None


def wait_for(check: Callable[[], T], timeout: float = 30, interval: float = 0.1, what: str = "") -> T:
    """Call `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:g}s: {what or check}")
        time.sleep(interval)
