"""What the operator may do on the Kubernetes API, declared once: the Helm chart's RBAC must grant exactly
this (tests/packaging/test_rbac.py compares the rendered rules), and a test scans this package for the
resources it touches so the declaration cannot silently fall behind the code.

Derived from the kinds' handlers.py (kopf watches and patches what it handles: list, watch, patch),
kube/client.py (Kube.get/list/create/apply/patch/patch_status/delete) and the kinds' manifests.py. No imports
beyond the standard library: the chart tests read it without kopf or torch.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where a rule lives in the chart. CLUSTER: a ClusterRole in every mode (cluster-scoped resources, or
# what kopf observes cluster-wide). WATCHED: the ClusterRole when watching every namespace, a Role per
# watched namespace otherwise. RELEASE: a Role in the release namespace only.
CLUSTER, WATCHED, RELEASE = "cluster", "watched", "release"


@dataclass(frozen=True)
class Permission:
    group: str  # "" is the core API group
    resource: str  # plural, with "/status" for the subresource
    verbs: tuple[str, ...]
    scope: str = WATCHED
    # Only when this chart feature is on: "peering" (more than one replica).
    feature: str | None = None
    # Granted only for the one object the chart names (resourceNames), never the whole kind.
    named: bool = False
    # Only in one way of running: "clusterwide" (every namespace) or "namespaced" (listed namespaces).
    mode: str | None = None


# What kopf itself needs, whatever the handlers do.
FRAMEWORK = (
    # Discovery: kopf notices CRDs being added or removed while it runs.
    Permission("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"), CLUSTER),
    # Namespaces matching the watched patterns appear and disappear while it runs.
    Permission("", "namespaces", ("list", "watch"), CLUSTER),
    # kopf.event() and kopf's own handler reports; Events are only ever posted, never edited. Listed:
    # the Events about an artifacts claim that stays Pending say why (trainingrun/reconcile.py).
    Permission("", "events", ("create", "list")),
    # Peering: replicas agree on which one is active (cluster-wide, or in each watched namespace).
    Permission(
        "kopf.dev",
        "clusterkopfpeerings",
        ("get", "list", "watch", "patch"),
        CLUSTER,
        "peering",
        mode="clusterwide",
    ),
    Permission(
        "kopf.dev", "kopfpeerings", ("get", "list", "watch", "patch"), WATCHED, "peering", mode="namespaced"
    ),
)

# What Crucible's handlers do (each kind's handlers.py and reconcile.py).
APPLICATION = (
    # Our resources: kopf lists, watches and annotates them (progress, last-handled spec); the handlers
    # read them fresh before acting and write only their status, never their spec.
    # A TuningJob creates its trials as TrainingRuns (tuningjob/reconcile.py); a ModelDeployment's
    # spec.retraining creates runs and deletes its finished ones beyond historyLimit (their artifacts
    # stay where they were written).
    Permission("crucible.dev", "trainingruns", ("get", "list", "watch", "create", "patch", "delete")),
    Permission("crucible.dev", "trainingruns/status", ("patch",)),
    Permission("crucible.dev", "modeldeployments", ("get", "list", "watch", "patch")),
    Permission("crucible.dev", "modeldeployments/status", ("patch",)),
    # A ModelDeployment promoting a TuningJob's best trial reads the TuningJob (modeldeployment/sources.py),
    # and a handler watches its status.bestTrial (kopf lists, watches and annotates what it handles).
    Permission("crucible.dev", "tuningjobs", ("get", "list", "watch", "patch")),
    Permission("crucible.dev", "tuningjobs/status", ("patch",)),
    # kopf.adopt() makes each child's owner reference blockOwnerDeletion: true; where the API server runs
    # OwnerReferencesPermissionEnforcement (OpenShift, hardened clusters) creating such a child needs
    # update on the owner's finalizers subresource. Nothing ever writes it.
    Permission("crucible.dev", "trainingruns/finalizers", ("update",)),
    Permission("crucible.dev", "modeldeployments/finalizers", ("update",)),
    Permission("crucible.dev", "tuningjobs/finalizers", ("update",)),
    # A run's spec ConfigMap: created once, read back when it already exists (409).
    Permission("", "configmaps", ("get", "create")),
    # Trainer Jobs: created once, watched (kopf annotates them) to mirror their progress into the run.
    Permission("batch", "jobs", ("get", "list", "watch", "create", "patch")),
    # A finished Job's pods are read for the trainer's result (the termination message); canary pods
    # are listed for their IPs, whose /metrics the canary analysis reads.
    Permission("", "pods", ("list",)),
    # A running trainer's log tail (kubectl logs) becomes its run's status.progress, every
    # progressIntervalSeconds; the result itself comes only from the termination message.
    Permission("", "pods/log", ("get",)),
    # A trainer pod that cannot be scheduled: its claims are read to say which one is missing or Pending.
    Permission("", "persistentvolumeclaims", ("get",)),
    # Server Deployments (stable and canary tracks): applied and watched; a canary is deleted once it
    # is promoted or rolled back.
    Permission("apps", "deployments", ("get", "list", "watch", "create", "patch", "delete")),
    # One Service per ModelDeployment, applied.
    Permission("", "services", ("get", "create", "patch")),
    # A PodDisruptionBudget only while replicas > 1: applied, or deleted when scaled down to one.
    Permission("policy", "poddisruptionbudgets", ("get", "create", "patch", "delete")),
    # No Secrets: a PostgreSQL study's URL reaches the operator as $CRUCIBLE_STUDY_URL, which the kubelet
    # fills from the Secret (tuningjob/config.py); the operator never reads Secrets through the API.
)

ALL = FRAMEWORK + APPLICATION


def required(
    clusterwide: bool = True, features: frozenset[str] | set[str] = frozenset()
) -> tuple[Permission, ...]:
    """The permissions needed when watching every namespace (or not), with these chart features on."""
    mode = "clusterwide" if clusterwide else "namespaced"
    return tuple(p for p in ALL if (p.feature is None or p.feature in features) and p.mode in (None, mode))
