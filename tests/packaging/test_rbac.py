"""The chart's RBAC grants exactly what operator/kube/permissions.py declares, and the declaration covers every
resource the operator's code touches."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from crucible.operator.kube import permissions
from crucible.operator.kube.client import PLURALS
from tests.packaging.chart import (
    NAMESPACE,
    NAMESPACED,
    POSTGRESQL,
    ROOT,
    SCENARIOS,
    needs_helm,
    of_kind,
    render,
)

OPERATOR = ROOT / "operator"
# A grant: (namespace or None for cluster-wide, apiGroup, resource, verb, resourceNames).
Grant = tuple[str | None, str, str, str, tuple[str, ...]]


def granted(manifests: list[dict]) -> set[Grant]:
    """Every (where, group, resource, verb, names) the rendered roles grant, one rule row expanded."""
    grants: set[Grant] = set()
    for role in of_kind(manifests, "ClusterRole") + of_kind(manifests, "Role"):
        where = role["metadata"].get("namespace") if role["kind"] == "Role" else None
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        grants.add((where, group, resource, verb, tuple(rule.get("resourceNames", ()))))
    return grants


def declared(clusterwide: bool, namespaces: list[str], features: set[str], secret: str = "") -> set[Grant]:
    """What operator/kube/permissions.py says the chart must grant, placed the way the chart places it."""
    grants: set[Grant] = set()
    for permission in permissions.required(clusterwide, features):
        if permission.scope == permissions.CLUSTER or (
            permission.scope == permissions.WATCHED and clusterwide
        ):
            places: list[str | None] = [None]
        elif permission.scope == permissions.WATCHED:
            places = list(namespaces)
        else:
            places = [NAMESPACE]
        names = (secret,) if permission.named else ()
        for where in places:
            grants |= {
                (where, permission.group, permission.resource, verb, names) for verb in permission.verbs
            }
    return grants


CASES = {
    "default": (SCENARIOS["default"], True, set()),
    "namespaced": (NAMESPACED, False, set()),
    "peering": (SCENARIOS["peering"], True, {"peering"}),
    "peering-namespaced": (SCENARIOS["peering-namespaced"], False, {"peering"}),
    "postgresql-study": (POSTGRESQL, True, set()),
    "postgresql-study-namespaced": ({**NAMESPACED, **POSTGRESQL}, False, set()),
}


@needs_helm
@pytest.mark.parametrize("case", CASES)
def test_rendered_rbac_grants_exactly_the_declared_permissions(case: str) -> None:
    values, clusterwide, features = CASES[case]
    expected = declared(clusterwide, NAMESPACED["watch"]["namespaces"], features, secret="study-db")
    assert granted(render(values)) == expected


@needs_helm
@pytest.mark.parametrize("case", CASES)
def test_no_wildcards_and_every_role_is_bound_to_the_operator(case: str) -> None:
    manifests = render(CASES[case][0])
    for role in of_kind(manifests, "ClusterRole") + of_kind(manifests, "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], role["metadata"]["name"]
    roles = {
        (r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"])
        for r in of_kind(manifests, "ClusterRole") + of_kind(manifests, "Role")
    }
    bindings = of_kind(manifests, "ClusterRoleBinding") + of_kind(manifests, "RoleBinding")
    bound = {(b["roleRef"]["kind"], b["metadata"].get("namespace"), b["roleRef"]["name"]) for b in bindings}
    assert bound == roles
    (account,) = of_kind(manifests, "ServiceAccount")
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
        ]


@needs_helm
def test_without_rbac_create_no_roles_are_rendered() -> None:
    manifests = render({"rbac": {"create": False}})
    assert not granted(manifests)


# The scan: what the code touches, found by reading it, must be declared.


def _modules() -> list[ast.Module]:
    return [ast.parse(path.read_text()) for path in sorted(OPERATOR.rglob("*.py"))]


def _constants(modules: list[ast.Module]) -> dict[str, tuple]:
    """Module-level NAME = ("group", "version", "plural") tuples of any operator module (handlers import
    them from one place), with API_GROUP/API_VERSION resolved."""
    known = {"API_GROUP": "crucible.dev", "API_VERSION": "v1alpha1"}
    found = {}
    for node in (node for module in modules for node in module.body):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple) and len(node.targets) == 1:
            items = [
                known.get(e.id) if isinstance(e, ast.Name) else getattr(e, "value", None)
                for e in node.value.elts
            ]
            if all(isinstance(item, str) for item in items):
                found[getattr(node.targets[0], "id", "")] = tuple(items)
    return found


def watched_resources() -> set[tuple[str, str]]:
    """(group, plural) of every kopf.on.* / kopf.index decorator in operator/."""
    found = set()
    modules = _modules()
    constants = _constants(modules)
    for module in modules:
        for node in ast.walk(module):
            if not (
                isinstance(node, ast.Call)
                and ast.unparse(node.func).startswith(("kopf.on.", "kopf.index", "kopf.timer", "kopf.daemon"))
            ):
                continue
            args: list = []
            for arg in node.args:
                if isinstance(arg, ast.Starred) and isinstance(arg.value, ast.Name):
                    args.extend(constants[arg.value.id])
                elif isinstance(arg, ast.Constant):
                    args.append(arg.value)
            if len(args) == 3:  # group, version, plural (startup/login/cleanup take none)
                found.add((args[0], args[2]))
    return found


def touched_kinds() -> set[str]:
    """Kinds named in Ref(...) calls and in "kind": "X" of the manifests the operator builds."""
    kinds = set()
    for module in _modules():
        for node in ast.walk(module):
            is_ref = isinstance(node, ast.Call) and ast.unparse(node.func) == "Ref" and len(node.args) >= 2
            if is_ref and isinstance(node.args[1], ast.Constant):
                kinds.add(node.args[1].value)
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "kind"
                        and isinstance(value, ast.Constant)
                    ):
                        kinds.add(value.value)
    return kinds


DECLARED = {(p.group, p.resource): set(p.verbs) for p in permissions.required(True, {"peering"})}
DECLARED_NAMESPACED = {(p.group, p.resource): set(p.verbs) for p in permissions.required(False, {"peering"})}
GROUPS = {
    "ConfigMap": "",
    "Event": "",
    "Pod": "",
    "PersistentVolumeClaim": "",
    "Service": "",
    "Job": "batch",
    "Deployment": "apps",
    "PodDisruptionBudget": "policy",
    "TrainingRun": "crucible.dev",
    "ModelDeployment": "crucible.dev",
    "TuningJob": "crucible.dev",
}


def test_the_scan_finds_what_the_operator_is_known_to_touch() -> None:
    assert {
        ("crucible.dev", "trainingruns"),
        ("crucible.dev", "modeldeployments"),
        ("batch", "jobs"),
        ("apps", "deployments"),
    } <= watched_resources()
    assert {"Job", "Deployment", "Service", "ConfigMap", "Pod", "TrainingRun"} <= touched_kinds()


def test_every_watched_resource_is_declared_with_list_watch_patch() -> None:
    for resource in watched_resources():
        assert resource in DECLARED, (
            f"kopf handles {resource} but operator/kube/permissions.py does not declare it"
        )
        assert {"list", "watch", "patch"} <= DECLARED[resource], resource


def test_every_kind_the_code_touches_is_declared() -> None:
    for kind in touched_kinds():
        if kind not in GROUPS:
            continue  # the kinds of owner references (kopf.adopt) and our own docs, not API calls
        plural = PLURALS.get(kind, kind.lower() + "s")
        assert (GROUPS[kind], plural) in DECLARED, (
            f"the operator touches {kind} but operator/kube/permissions.py does not declare {GROUPS[kind]}/{plural}"
        )


def test_every_kind_the_client_knows_is_declared() -> None:
    for kind, plural in PLURALS.items():
        assert (GROUPS[kind], plural) in DECLARED, kind


def test_our_resources_status_is_declared_for_status_patches() -> None:
    client_calls = {
        ast.unparse(n.func).rsplit(".", 1)[-1]
        for m in _modules()
        for n in ast.walk(m)
        if isinstance(n, ast.Call)
    }
    assert "patch_status" in client_calls
    for plural in ("trainingruns", "modeldeployments"):
        assert DECLARED[("crucible.dev", f"{plural}/status")] == {"patch"}


def test_peering_uses_the_resource_kopf_uses_in_each_mode() -> None:
    assert ("kopf.dev", "clusterkopfpeerings") in DECLARED and ("kopf.dev", "kopfpeerings") not in DECLARED
    assert ("kopf.dev", "kopfpeerings") in DECLARED_NAMESPACED


def test_permissions_module_stays_free_of_heavy_imports() -> None:
    imported = {
        n.names[0].name
        for n in ast.walk(ast.parse(Path(permissions.__file__).read_text()))
        if isinstance(n, ast.Import | ast.ImportFrom) and n.names
    }
    assert imported <= {"annotations", "dataclass"}
