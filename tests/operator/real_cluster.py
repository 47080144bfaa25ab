"""End-to-end tests on a real control plane: a namespace per test, read back through a watch-fed
mirror, so tests read objects at once and see every version the server sent. Never part of the
product."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.operator.kube_api import MERGE, KubeApi, Mirror, resource_path

GROUP_VERSION = "crucible.dev/v1alpha1"
PLURALS = {"TrainingRun": "trainingruns", "ModelDeployment": "modeldeployments", "TuningJob": "tuningjobs"}
# What the end-to-end tests look at: our kinds, what the operator creates, what the controllers make.
MIRRORED = (
    *(f"{GROUP_VERSION}/{plural}" for plural in PLURALS.values()),
    "v1/configmaps",
    "batch/v1/jobs",
    "apps/v1/deployments",
    "apps/v1/replicasets",
    "v1/pods",
    "v1/services",
    "discovery.k8s.io/v1/endpointslices",
    "policy/v1/poddisruptionbudgets",
    "v1/events",
)


@dataclass
class RealCluster:
    """One test's namespace on the real API server; requests are made as the cluster admin."""

    api: KubeApi
    namespace: str
    mirror: Mirror = field(init=False)

    def __post_init__(self) -> None:
        self.mirror = Mirror(self.api, self.namespace, MIRRORED)

    @classmethod
    async def new_namespace(cls, api: KubeApi, prefix: str = "e2e") -> RealCluster:
        namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
        await api.call("POST", resource_path("v1/namespaces"), {"metadata": {"name": namespace}})
        cluster = cls(api, namespace)
        await cluster.mirror.start()
        return cluster

    async def close(self, delete: bool = True) -> None:
        await self.mirror.stop()
        if delete:  # not waited for: the namespace controller finishes it in the background
            await self.api.request("DELETE", resource_path("v1/namespaces", name=self.namespace))

    # -- reading (from the mirror, at once)

    def objects_of(self, resource: str, namespace: str | None = None) -> dict[str, dict]:
        assert namespace in (None, self.namespace), f"only {self.namespace} is mirrored"
        return dict(self.mirror.objects[resource])

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict | None:
        return self.objects_of(resource, namespace).get(name)

    def versions(self, resource: str, name: str) -> list[dict]:
        """Every version of the object the server sent, in order (deleted ones included)."""
        return list(self.mirror.versions.get((resource, name), []))

    # -- writing (what `kubectl` does)

    def _collection(self, kind: str) -> str:
        return resource_path(f"{GROUP_VERSION}/{PLURALS[kind]}", self.namespace)

    async def create_resource(self, kind: str, name: str, spec: dict, labels: dict | None = None) -> dict:
        """What `kubectl apply` of a new TrainingRun, ModelDeployment or TuningJob does."""
        body = {
            "apiVersion": GROUP_VERSION,
            "kind": kind,
            "metadata": {"name": name, "namespace": self.namespace, "labels": labels or {}},
            "spec": spec,
        }
        return await self.api.call("POST", self._collection(kind), body)

    async def patch_spec(self, kind: str, name: str, spec: dict) -> dict:
        return await self.api.call("PATCH", f"{self._collection(kind)}/{name}", {"spec": spec}, MERGE)

    async def patch(self, kind: str, name: str, patch: dict) -> dict:
        return await self.api.call("PATCH", f"{self._collection(kind)}/{name}", patch, MERGE)

    async def delete_resource(self, kind: str, name: str) -> None:
        await self.api.call("DELETE", f"{self._collection(kind)}/{name}")

    async def create(self, resource: str, body: dict) -> dict:
        return await self.api.call("POST", resource_path(resource, self.namespace), body)

    async def delete(self, resource: str, name: str) -> None:
        await self.api.call("DELETE", resource_path(resource, self.namespace, name))

    async def bound_claim(self, claim: str, folder: Path) -> None:
        """A PersistentVolumeClaim bound to a volume of its own (a hostPath on the test kubelet's folder for
        it), as a provisioner and the volume controller leave it: the scheduler places no pod whose
        claim is missing or unbound.

        The binding is written whole (the claim's volumeName and bind-completed annotation, the
        volume's claimRef with the claim's uid, both phases Bound) rather than left to the volume
        controller: it bound a pre-bound pair only at its next 15-second resync about half the time
        (its cache of the volume lagging the claim), and a pod scheduled meanwhile waited 11-15 s
        with the unschedulable ones: a delay every test paid in part, and the likely cause of a run
        that did not finish within a test's 60 s on a busy machine."""
        volume = f"{self.namespace}-{claim}"
        spec = {"accessModes": ["ReadWriteMany"], "storageClassName": ""}
        size = {"storage": "1Gi"}
        metadata = {"name": claim, "annotations": {"pv.kubernetes.io/bind-completed": "yes"}}
        request = {**spec, "volumeName": volume, "resources": {"requests": size}}
        created = await self.create("v1/persistentvolumeclaims", {"metadata": metadata, "spec": request})
        claim_ref = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": self.namespace,
            "name": claim,
            "uid": created["metadata"]["uid"],
        }
        await self.api.call(
            "POST",
            "/api/v1/persistentvolumes",
            {
                "metadata": {"name": volume},
                "spec": {
                    **spec,
                    "capacity": size,
                    "hostPath": {"path": str(folder)},
                    "claimRef": claim_ref,
                    "persistentVolumeReclaimPolicy": "Retain",
                },
            },
        )
        await self.api.call(
            "PATCH",
            resource_path("v1/persistentvolumes", name=volume) + "/status",
            {"status": {"phase": "Bound"}},
            MERGE,
        )
        bound = {"phase": "Bound", "accessModes": spec["accessModes"], "capacity": size}
        await self.api.call(
            "PATCH",
            resource_path("v1/persistentvolumeclaims", self.namespace, claim) + "/status",
            {"status": bound},
            MERGE,
        )
