"""A Kubernetes API for tests: kmock's emulator plus what the real API server does that the operator
and kopf rely on (uids, resourceVersions, generations, creation timestamps, status subresources,
owner-reference garbage collection), and a way to hold requests to play an operator crash."""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import attrs
import kmock
import yaml
from kmock._internal import parsing, rendering

from crucible.api import crd

NAMESPACE = "default"
GROUP_VERSION = "crucible.dev/v1alpha1"


_parse_path = parsing.parse_path


def _parse_path_with_namespaces(path: str) -> parsing.ParsedPath:
    """kmock 0.8 cannot parse the namespace list URL (/api/v1/namespaces), which kopf watches when it
    serves named namespaces; every other URL is parsed as kmock does."""
    if path.strip("/") == "api/v1/namespaces":
        return parsing.ParsedPath(group="", version="v1", plural="namespaces")
    return _parse_path(path)


parsing.parse_path = _parse_path_with_namespaces

PLURALS = {"TrainingRun": "trainingruns", "ModelDeployment": "modeldeployments", "TuningJob": "tuningjobs"}


def _collection(kind: str) -> str:
    return f"/apis/{GROUP_VERSION}/namespaces/{NAMESPACE}/{PLURALS[kind]}"


def merged(base: dict, patch: dict) -> dict:
    """A JSON merge patch applied to a copy of `base` (null removes a key)."""
    result = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


@attrs.define(kw_only=True)
class Cluster(kmock.KubernetesEmulator):
    revision: int = 0
    created_at: dict = attrs.field(factory=dict)  # (plural, namespace, name) -> time.monotonic()
    holds: list = attrs.field(factory=list)
    history: list = attrs.field(factory=list)  # every finished request, in order
    held_requests: list = attrs.field(factory=list)

    def declare_builtins_and_crds(self) -> None:
        self.resources.load_bundled()
        for kind in crd.kinds():
            definition = crd.custom_resource_definition(kind)
            names = definition["spec"]["names"]
            self.resources[f"{GROUP_VERSION}/{kind.plural}"] = kmock.ResourceInfo(
                kind=kind.kind,
                singular=names["singular"],
                namespaced=True,
                verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
                shortnames=set(names["shortNames"]),
                categories=set(names["categories"]),
                subresources={"status"},
            )
            self.objects["apiextensions.k8s.io/v1/customresourcedefinitions", None, kind.crd_name] = (
                definition
            )
        self.objects["v1/namespaces", None, NAMESPACE] = {"metadata": {"name": NAMESPACE}}

    def hold(self, predicate: Callable[[rendering.Request], bool]) -> asyncio.Event:
        """Requests matching `predicate` wait until the returned event is set, then fail with 503:
        what an operator killed mid-request never got to write."""
        released = asyncio.Event()
        self.holds.append((predicate, released))
        return released

    def held(self, predicate: Callable[[rendering.Request], bool]) -> int:
        """How many requests matching `predicate` were held."""
        return sum(1 for request in self.held_requests if predicate(request))

    def objects_of(self, resource: str, namespace: str = NAMESPACE) -> dict[str, dict]:
        found = {}
        wanted = kmock.resource(resource)
        for (res, ns, name), obj in list(self.objects.items()):
            if ns == namespace and res == wanted and not obj.deleted:
                found[name] = obj.raw
        return found

    def get(self, resource: str, name: str, namespace: str = NAMESPACE) -> dict | None:
        return self.objects_of(resource, namespace).get(name)

    async def create_resource(self, kind: str, name: str, spec: dict, labels: dict | None = None) -> dict:
        """What `kubectl apply` of a new TrainingRun or ModelDeployment does."""
        body = {
            "apiVersion": GROUP_VERSION,
            "kind": kind,
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels or {}},
            "spec": spec,
        }
        async with self.post(_collection(kind), json=body) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def bound_claim(self, claim: str) -> None:
        """The artifacts claim the operator's configuration names, as a real cluster has it (bound): the
        operator reads it while a trainer pod is not scheduled, and says when it is missing."""
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": NAMESPACE},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound"},
        }
        async with self.post(f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims", json=body) as response:
            assert response.status < 300, await response.text()

    async def patch_spec(self, kind: str, name: str, spec: dict) -> None:
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.patch(
            f"{_collection(kind)}/{name}", json={"spec": spec}, headers=headers
        ) as response:
            assert response.status < 300, await response.text()

    async def delete_resource(self, kind: str, name: str) -> None:
        async with self.delete(f"{_collection(kind)}/{name}") as response:
            assert response.status < 300, await response.text()

    @property
    def requests(self) -> list[rendering.Request]:
        """Every request so far: finished ones, then those still in flight (watches, held ones)."""
        return [*self.history, *self._requests]

    async def _handle(self, request: rendering.Request):  # type: ignore[override]
        try:
            return await self._handle_now(request)
        finally:
            # kmock matches each request against every request it has recorded, which grows
            # quadratic with a few thousand; it only needs the ones still in flight.
            self.history.append(request)
            self._requests[:] = [other for other in self._requests if other is not request]

    async def _handle_now(self, request: rendering.Request):
        for predicate, released in self.holds:
            if predicate(request):
                self.held_requests.append(request)
                await released.wait()
                raise kmock.KubernetesError(503, "ServiceUnavailable", "held and dropped by the test")
        if request.resource is not None and isinstance(request.data, dict):
            if request.action == kmock.action.CREATE:
                self._stamp_created(request)
            elif request.action == kmock.action.UPDATE:
                self._stamp_updated(request)
        response = await super()._handle(request)
        if request.action == kmock.action.DELETE and request.name and response.status < 300:
            await self._collect_garbage(request)
        return response

    # kmock finds one object by scanning them all; a direct lookup keeps thousands of objects fast.
    def _one(self, request: rendering.Request, namespace: str | None, name: str | None):
        key = (request.resource, namespace, name)
        return self.objects[key] if key in self.objects else None  # noqa: SIM401 (no .get on it)

    async def _serve_fetch(self, request: rendering.Request) -> dict:
        found = self._one(request, request.namespace, request.name)
        if found is None or found.deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return found.raw

    async def _serve_create(self, request: rendering.Request) -> dict:
        metadata = request.data.get("metadata", {})
        return self._one(
            request, request.namespace or metadata.get("namespace"), metadata.get("name")
        ).last.raw

    async def _serve_update(self, request: rendering.Request) -> dict:
        return self._one(request, request.namespace, request.name).last.raw

    _serve_delete = _serve_update

    def _next_revision(self) -> str:
        self.revision += 1
        return str(self.revision)

    def _stamp_created(self, request: rendering.Request) -> None:
        metadata = request.data.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        metadata.update(
            uid=str(uuid.uuid4()),
            resourceVersion=self._next_revision(),
            generation=1,
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        if request.namespace:
            metadata.setdefault("namespace", request.namespace)
        key = (request.resource.plural, metadata.get("namespace"), metadata.get("name"))
        self.created_at.setdefault(key, time.monotonic())

    def _stamp_updated(self, request: rendering.Request) -> None:
        """A status subresource changes only status; the main resource never does. A changed spec
        moves metadata.generation."""
        data = request.data
        info = self.resources.get(request.resource)
        if request.subresource == "status":
            for key in [key for key in data if key != "status"]:
                del data[key]
        elif info is not None and "status" in info.subresources:
            data.pop("status", None)
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects:
            return  # the emulator answers 404
        stored = self.objects[key]
        metadata = data.setdefault("metadata", {})
        metadata["resourceVersion"] = self._next_revision()
        if "spec" in data and not stored.deleted:
            old = stored.raw
            if merged(old.get("spec") or {}, data["spec"]) != (old.get("spec") or {}):
                metadata["generation"] = (old.get("metadata", {}).get("generation") or 1) + 1

    async def _collect_garbage(self, request: rendering.Request) -> None:
        """Delete the dependents of a deleted object, as the garbage collector does."""
        key = (request.resource, request.namespace, request.name)
        if key in self.objects:
            await self._delete_dependents(self.objects[key].last.get("metadata", {}).get("uid"))

    async def _delete_dependents(self, uid: str | None) -> None:
        for (resource, _, _), obj in list(self.objects.items()):
            if not uid or obj.deleted:
                continue
            references = obj.raw.get("metadata", {}).get("ownerReferences") or []
            if any(reference.get("uid") == uid for reference in references):
                async with self._lock:
                    raw = obj.raw
                    obj.delete()
                    await self._buses[resource].put({"type": "DELETED", "object": raw})
                await self._delete_dependents(raw.get("metadata", {}).get("uid"))


def write_kubeconfig(path: Path, server: str) -> Path:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(document))
    return path


async def eventually(check: Callable[[], object], timeout: float = 30, message: str = "") -> object:
    """Poll `check` until it returns something truthy (letting the emulator serve meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {message or check}")
        await asyncio.sleep(0.05)
