"""The Helm chart on the real control plane: its manifests rendered for a namespace, and the operator's
identity as the chart makes it (its ServiceAccount, a token bound to its rendered ClusterRole), so a
test can run the operator with exactly the chart's permissions."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.cluster.controlplane import ControlPlane
from tests.cluster.kube import apply
from tests.packaging.chart import CHART, helm

# Dependencies first: definitions, identities, configuration, then what uses them.
ORDER = [
    "CustomResourceDefinition", "ServiceAccount", "ConfigMap", "Secret", "ClusterRole", "ClusterRoleBinding",
    "Role", "RoleBinding", "PersistentVolumeClaim", "Service", "Deployment",
]  # fmt: skip


def render_chart(values: dict, release: str, namespace: str) -> list[dict]:
    """`helm template --include-crds` of the chart into `namespace`, in the order to apply it."""
    result = helm("template", release, str(CHART), "--namespace", namespace, "--include-crds", values=values)
    if result.returncode != 0:
        raise AssertionError(result.stderr)
    manifests = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return sorted(manifests, key=lambda m: ORDER.index(m["kind"]) if m["kind"] in ORDER else len(ORDER))


def operator_kubeconfig(
    plane: ControlPlane,
    api,
    namespace: str,
    path: Path,
    *,
    values: dict | None = None,
    keep_rule: Callable[[dict], bool] = lambda rule: True,
) -> Path:
    """A kubeconfig for the chart's ServiceAccount in `namespace` (the release namespace), with a token
    bound to the chart's rendered ClusterRole (cluster-wide mode; rules for which `keep_rule` is false are
    left out). The role is named after the namespace, so tests in other namespaces never share it."""
    manifests = render_chart(values or {}, "crucible", namespace)
    (role,) = [m for m in manifests if m["kind"] == "ClusterRole"]
    (account,) = [m for m in manifests if m["kind"] == "ServiceAccount"]
    role = copy.deepcopy(role)
    role["metadata"]["name"] = f"{namespace}-crucible-operator"
    role["rules"] = [rule for rule in role["rules"] if keep_rule(rule)]
    apply(api, role)
    apply(api, account, namespace)
    return plane.service_account_kubeconfig(
        namespace, account["metadata"]["name"], role["metadata"]["name"], path
    )
