"""The Helm chart on the real API server: every manifest `helm template` renders is accepted by server-side
apply in a namespace that enforces the `restricted` Pod Security level, and the operator's pod is
admitted there; the chart's RBAC lets the operator create the children it adopts (blockOwnerDeletion
under OwnerReferencesPermissionEnforcement)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import create_namespace, delete_namespace, unique_name
from tests.cluster.kube import apply, create, refusal
from tests.packaging.chart import CHART, HELM, PEERING, POSTGRESQL, S3, helm

pytestmark = pytest.mark.skipif(
    not HELM.exists(), reason="helm is not in .tools/bin (scripts/fetch-tools.sh)"
)

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
SCENARIOS = {"default": {}, "peering": PEERING, "s3-artifacts": S3, "postgresql-study": POSTGRESQL}
# Dependencies first: definitions, identities, configuration, then what uses them.
ORDER = [
    "CustomResourceDefinition", "ServiceAccount", "ConfigMap", "Secret", "ClusterRole", "ClusterRoleBinding",
    "Role", "RoleBinding", "PersistentVolumeClaim", "Service", "Deployment",
]  # fmt: skip


def render(values: dict, release: str, namespace: str) -> list[dict]:
    result = helm("template", release, str(CHART), "--namespace", namespace, "--include-crds", values=values)
    assert result.returncode == 0, result.stderr
    manifests = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return sorted(manifests, key=lambda m: ORDER.index(m["kind"]) if m["kind"] in ORDER else len(ORDER))


@pytest.fixture(scope="module")
def kopf_peering_crds(kube_api) -> None:
    for crd in yaml.safe_load_all((CHART / "files" / "kopf-peering-crds.yaml").read_text()):
        apply(kube_api, crd)


@pytest.fixture
def restricted_namespace(kube_api, request: pytest.FixtureRequest):
    name = create_namespace(kube_api, unique_name(request.node.name.removeprefix("test_")[:30]), RESTRICTED)
    yield name
    delete_namespace(kube_api, name)


def pod_of(deployment: dict, namespace: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": deployment["metadata"]["name"], "namespace": namespace},
        "spec": copy.deepcopy(deployment["spec"]["template"]["spec"]),
    }


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_manifest_is_accepted_under_restricted_pod_security(
    scenario: str, kube_api, kopf_peering_crds, crucible_crds, restricted_namespace: str
) -> None:
    namespace = restricted_namespace
    manifests = render(SCENARIOS[scenario], "crucible", namespace)
    if scenario == "postgresql-study":  # the Secret the values name exists before the operator starts
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "study-db"},
                  "stringData": {"url": "postgresql://u:p@db/study"}}  # fmt: skip
        apply(kube_api, secret, namespace)
    kinds = set()
    for manifest in manifests:
        applied = apply(kube_api, manifest, namespace)  # raises with the API server's refusal
        assert applied["metadata"]["uid"]
        kinds.add(manifest["kind"])
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole", "Service"} <= kinds
    if scenario == "peering":
        assert "ClusterKopfPeering" in kinds
    # Pod Security admission judges pods, not Deployments: the operator's pod, exactly as its
    # ReplicaSet would create it, must be admitted in the restricted namespace.
    (deployment,) = [m for m in manifests if m["kind"] == "Deployment"]
    assert refusal(kube_api, pod_of(deployment, namespace), namespace) is None


def test_the_restricted_namespace_refuses_a_pod_that_breaks_it(
    kube_api, crucible_crds, restricted_namespace: str
) -> None:
    (deployment,) = [m for m in render({}, "crucible", restricted_namespace) if m["kind"] == "Deployment"]
    for manifest in render({}, "crucible", restricted_namespace):
        if manifest["kind"] == "ServiceAccount":
            apply(kube_api, manifest, restricted_namespace)
    pod = pod_of(deployment, restricted_namespace)
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    refused = refusal(kube_api, pod, restricted_namespace)
    assert refused is not None and refused.code == 403
    assert 'violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false' in refused.message


# --- The chart's RBAC on a server that enforces owner-reference permissions ------------------------


def owned(kind_of_owner: dict, owner: dict) -> list[dict]:
    return [{"apiVersion": kind_of_owner["apiVersion"], "kind": kind_of_owner["kind"],
             "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
             "controller": True, "blockOwnerDeletion": True}]  # fmt: skip


def children(owner: dict) -> list[tuple[str, dict]]:
    """What the operator creates under each of its resources, adopted as kopf.adopt() does."""
    refs = owned(owner, owner)
    labels = {"app": owner["metadata"]["name"]}
    pod = {
        "metadata": {"labels": labels},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]},
    }
    meta = {"name": f"{owner['metadata']['name']}-child", "ownerReferences": refs}
    if owner["kind"] == "TrainingRun":
        return [
            (
                "ConfigMap",
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"spec.json": "{}"}},
            ),
            ("Job", {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {"template": pod}}),
        ]
    if owner["kind"] == "ModelDeployment":
        server = {
            "selector": {"matchLabels": labels},
            "template": {**pod, "spec": {**pod["spec"], "restartPolicy": "Always"}},
        }
        return [
            ("Deployment", {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": server}),
            (
                "Service",
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": meta,
                    "spec": {"selector": labels, "ports": [{"port": 80}]},
                },
            ),
            (
                "PodDisruptionBudget",
                {
                    "apiVersion": "policy/v1",
                    "kind": "PodDisruptionBudget",
                    "metadata": meta,
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
                },
            ),
        ]
    trial = yaml.safe_load((ROOT / "examples" / "trainingrun-digits.yaml").read_text())
    trial["metadata"] = {**meta, "name": f"{owner['metadata']['name']}-trial-0"}
    return [("TrainingRun", trial)]  # a TuningJob's trial


ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["trainingrun-digits.yaml", "modeldeployment-digits.yaml", "tuningjob-digits.yaml"]


def _operator_kubeconfig(plane: ControlPlane, kube_api, namespace: str, rules_filter, path: Path) -> Path:
    """The chart's ServiceAccount with a token bound to (a copy of) its rendered ClusterRole."""
    manifests = render({}, f"r{namespace[-6:]}", namespace)
    (role,) = [m for m in manifests if m["kind"] == "ClusterRole"]
    (account,) = [m for m in manifests if m["kind"] == "ServiceAccount"]
    role = copy.deepcopy(role)
    role["metadata"]["name"] = f"{namespace}-operator"
    role["rules"] = [rule for rule in role["rules"] if rules_filter(rule)]
    apply(kube_api, role)
    apply(kube_api, account, namespace)
    return plane.service_account_kubeconfig(
        namespace, account["metadata"]["name"], role["metadata"]["name"], path
    )


def _create_owners(api, namespace: str) -> list[dict]:
    owners = []
    for name in EXAMPLES:
        owner = yaml.safe_load((ROOT / "examples" / name).read_text())
        owners.append(apply(api, owner, namespace))
    return owners


def test_the_chart_role_creates_every_child_the_operator_adopts(
    control_plane: ControlPlane, kube_api, crucible_crds, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = _operator_kubeconfig(control_plane, kube_api, namespace, lambda rule: True, tmp_path / "kc")
    with control_plane.api_client(kubeconfig) as api:
        for owner in _create_owners(kube_api, namespace):
            for kind, child in children(owner):
                created = create(api, child, namespace)
                assert created["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is True, kind


def test_without_update_on_finalizers_adopting_is_refused(
    control_plane: ControlPlane, kube_api, crucible_crds, namespace: str, tmp_path: Path
) -> None:
    # The defect the finalizers rule fixes, as the API server reports it.
    def without_finalizers(rule: dict) -> bool:
        return not any(resource.endswith("/finalizers") for resource in rule["resources"])

    kubeconfig = _operator_kubeconfig(control_plane, kube_api, namespace, without_finalizers, tmp_path / "kc")
    (run, _, _) = _create_owners(kube_api, namespace)
    (_, config_map), _ = children(run)
    with control_plane.api_client(kubeconfig) as api, pytest.raises(client.ApiException) as refused:
        create(api, config_map, namespace)
    assert refused.value.status == 403
    assert (
        "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on"
        in (refused.value.body)
    )
