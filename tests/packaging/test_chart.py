"""The Helm chart renders, lints and validates in every supported shape; bad values fail at install."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import kubernetes_validate
import pytest
import yaml

from crucible.cli import build_parser
from crucible.operator.config import load_config
from crucible.operator.kube import naming
from tests.packaging.chart import (
    CHART,
    NAMESPACE,
    NAMESPACED,
    ROOT,
    S3,
    SCENARIOS,
    helm,
    needs_helm,
    of_kind,
    operator_config,
    render,
)

pytestmark = needs_helm
KUBERNETES_VERSION = "1.33"
# Kinds of CRDs that are not Kubernetes' own: kubernetes-validate has no schema for them.
FOREIGN_KINDS = {"ServiceMonitor", "ClusterKopfPeering", "KopfPeering"}


def test_chart_and_app_version_follow_the_project_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == project["version"]


def test_chart_crds_are_the_repository_crds() -> None:
    repository = sorted(path.name for path in (ROOT / "crds").glob("*.yaml"))
    assert repository, "crds/ is empty"
    assert sorted(path.name for path in (CHART / "crds").glob("*.yaml")) == repository
    for name in repository:
        chart_crd = (CHART / "crds" / name).read_bytes()
        assert chart_crd == (ROOT / "crds" / name).read_bytes(), (
            f"charts/crucible/crds/{name} is stale: cp crds/*.yaml charts/crucible/crds/"
        )


@pytest.mark.parametrize(
    "values",
    [{}, NAMESPACED, SCENARIOS["peering-namespaced"], S3],
    ids=["default", "namespaced", "peering", "s3"],
)
def test_helm_lint_passes(values: dict) -> None:
    result = helm("lint", "--strict", str(CHART), values=values)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_rendered_manifest_validates_against_the_kubernetes_schemas(scenario: str) -> None:
    manifests = render(SCENARIOS[scenario])
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "ConfigMap"} <= {
        m["kind"] for m in manifests
    }
    for manifest in manifests:
        if manifest["kind"] in FOREIGN_KINDS:
            continue
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    "scenario",
    ["default", "gpu-pool", "namespaced", "peering", "promotion", "postgresql-study", "s3-artifacts"],
)
def test_the_operator_accepts_the_rendered_configuration(scenario: str, tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(operator_config(render(SCENARIOS[scenario]))))
    config = load_config(path)
    assert {"cpu", "gpu"} <= set(config.node_pools)
    assert config.node_pools["gpu"].gpu_resource == "nvidia.com/gpu"
    assert config.images.trainer == "crucible-trainer:0.1.0"


def test_a_gpu_pool_from_values_reaches_the_operator_with_cuda_images(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(operator_config(render(SCENARIOS["gpu-pool"]))))
    pool = load_config(path).node_pools["a100"]
    assert pool.node_selector == {"gpu-type": "a100"}
    assert (pool.gpu_resource, pool.runtime_class_name) == ("nvidia.com/gpu", "nvidia")
    assert pool.images is not None and pool.images.trainer == "crucible-trainer-cuda:0.1.0"


@pytest.mark.parametrize(
    ("values", "endpoint", "region"),
    [
        (S3, None, None),
        (
            {
                "artifacts": {
                    "type": "s3",
                    "s3": {**S3["artifacts"]["s3"], "endpoint": "http://minio:9000", "region": "eu-west-1"},
                }
            },
            "http://minio:9000",
            "eu-west-1",
        ),
    ],
)
def test_the_operator_accepts_s3_artifact_settings_from_values(values, endpoint, region, tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(operator_config(render(values))))
    s3 = load_config(path).artifacts.s3
    assert s3 is not None
    assert (s3.uri, s3.credentials_secret) == ("s3://models/crucible", "s3-creds")
    assert (s3.endpoint, s3.region) == (endpoint, region)


def test_platform_settings_are_rendered_under_their_agreed_keys() -> None:
    assert operator_config(render(SCENARIOS["promotion"]))["promotion"] == {
        "requiredGates": ["crossValidation"],
        "minMetric": {"accuracy": 0.95},
    }
    tuning = operator_config(render(SCENARIOS["postgresql-study"]))["tuning"]
    assert tuning["study"]["urlSecret"] == {"name": "study-db", "key": "url"}
    # Trial pods reach the study proxy at the operator's Service.
    (service,) = of_kind(render({}), "Service")
    assert tuning["proxyAddress"] == f"{service['metadata']['name']}.{NAMESPACE}.svc"
    assert tuning["proxyPort"] == service["spec"]["ports"][0]["port"] == 13000
    assert operator_config(render(S3))["artifacts"]["s3"] == {
        "uri": "s3://models/crucible",
        "credentialsSecret": "s3-creds",
    }
    # Nothing the current operator would refuse by default.
    assert set(operator_config(render({}))) == {"nodePools", "images", "artifacts", "training", "tuning"}


def test_how_often_a_trainers_progress_is_read_is_a_chart_value() -> None:
    training = operator_config(render({"training": {"progressIntervalSeconds": 10}}))["training"]
    assert training["progressIntervalSeconds"] == 10
    assert operator_config(render({}))["training"]["progressIntervalSeconds"] == 30
    assert helm(
        "template", "crucible", str(CHART), values={"training": {"progressIntervalSeconds": 0}}
    ).returncode


def operator_args(scenario: str) -> list[str]:
    (deployment,) = of_kind(render(SCENARIOS[scenario]), "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize("scenario", ["default", "namespaced", "postgresql-study"])
def test_the_operator_command_line_parses(scenario: str) -> None:
    args = build_parser().parse_args(operator_args(scenario))
    assert args.config == "/etc/crucible/config.yaml"
    assert args.liveness == "http://0.0.0.0:8080/healthz"
    if scenario == "namespaced":
        assert args.namespace == ["ml", "research"]
    else:
        assert args.all_namespaces


def test_the_operator_command_line_with_peering_parses() -> None:
    args = build_parser().parse_args(operator_args("peering"))
    assert args.peering == "crucible"


def test_peering_objects_only_when_enabled() -> None:
    assert not of_kind(render({}), "ClusterKopfPeering")
    (cluster_peering,) = of_kind(render(SCENARIOS["peering"]), "ClusterKopfPeering")
    assert cluster_peering["apiVersion"] == "kopf.dev/v1"
    namespaced = of_kind(render(SCENARIOS["peering-namespaced"]), "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in namespaced) == ["ml", "research"]
    (deployment,) = of_kind(render(SCENARIOS["peering"]), "Deployment")
    # One replica even with peering (a standby would not serve the study proxy), replaced, not rolled.
    assert (deployment["spec"]["replicas"], deployment["spec"]["strategy"]["type"]) == (1, "Recreate")


def test_a_single_operator_never_overlaps_itself_in_a_rollout() -> None:
    (deployment,) = of_kind(render({}), "Deployment")
    assert (deployment["spec"]["replicas"], deployment["spec"]["strategy"]["type"]) == (1, "Recreate")


def test_the_operator_is_probed_on_kopfs_liveness_endpoint() -> None:
    (deployment,) = of_kind(render({}), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # Ready only once kopf serves it: a crash-looping operator never reads as rolled out.
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_the_operator_gets_its_peer_identity_from_the_pod_name() -> None:
    # The operator's peer identity (operator_identity in operator/command.py): the pod's name.
    (deployment,) = of_kind(render({}), "Deployment")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_the_operator_pod_owns_its_volumes_through_fs_group() -> None:
    # A fresh block-storage volume's root is root-owned 0755: the kubelet gives it to fsGroup.
    (deployment,) = of_kind(render({}), "Deployment")
    context = deployment["spec"]["template"]["spec"]["securityContext"]
    assert context["fsGroup"] == context["runAsGroup"] == 65532


def test_the_default_artifacts_claim_is_one_every_default_storage_class_provisions() -> None:
    claims = {c["metadata"]["name"]: c for c in of_kind(render({}), "PersistentVolumeClaim")}
    assert claims["crucible-artifacts"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    shared = render({"artifacts": {"pvc": {"accessModes": ["ReadWriteMany"]}}})
    (claim,) = [
        c for c in of_kind(shared, "PersistentVolumeClaim") if c["metadata"]["name"] == "crucible-artifacts"
    ]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_study_proxy_address_can_be_overridden() -> None:
    values = {"tuning": {"proxyAddress": "crucible-study.ml-platform.svc.cluster.example"}}
    assert (
        operator_config(render(values))["tuning"]["proxyAddress"]
        == "crucible-study.ml-platform.svc.cluster.example"
    )


def test_storage_claims_follow_the_values() -> None:
    claims = {
        (c["metadata"]["namespace"], c["metadata"]["name"])
        for c in of_kind(render({}), "PersistentVolumeClaim")
    }
    assert claims == {(NAMESPACE, "crucible-artifacts"), (NAMESPACE, "crucible-study")}
    # Namespaced: trainer and server pods run in the watched namespaces, so the artifacts claim is there too.
    namespaced = {
        (c["metadata"]["namespace"], c["metadata"]["name"])
        for c in of_kind(render(NAMESPACED), "PersistentVolumeClaim")
    }
    assert {("ml", "crucible-artifacts"), ("research", "crucible-artifacts")} <= namespaced
    assert not [
        c
        for c in of_kind(render(S3), "PersistentVolumeClaim")
        if c["metadata"]["name"] == "crucible-artifacts"
    ]
    postgres = render(SCENARIOS["postgresql-study"])
    assert "crucible-study" not in {c["metadata"]["name"] for c in of_kind(postgres, "PersistentVolumeClaim")}
    (deployment,) = of_kind(postgres, "Deployment")
    (url,) = deployment["spec"]["template"]["spec"]["containers"][0]["env"][-1:]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "study-db", "key": "url"}


def test_the_service_monitor_scrapes_the_model_servers() -> None:
    (monitor,) = of_kind(render(SCENARIOS["service-monitor"]), "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "server"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    # Both Services of a ModelDeployment carry these labels; only <name>-server (every track) is kept,
    # so stable pods are not scraped twice through <name>-stable.
    (keep,) = monitor["spec"]["endpoints"][0]["relabelings"]
    assert keep == {
        "sourceLabels": ["__meta_kubernetes_service_name"],
        "regex": ".+-server",
        "action": "keep",
    }
    for name in ("digits", "d" * 200):
        assert re.fullmatch(keep["regex"], naming.service_name(name))
        assert not re.fullmatch(keep["regex"], naming.stable_service_name(name))
    assert not of_kind(render({}), "ServiceMonitor")


BAD_VALUES = {
    "two replicas without peering": {"replicaCount": 2},
    "two replicas with peering": {"replicaCount": 2, "peering": {"enabled": True}},
    "a study proxy address with a scheme": {"tuning": {"proxyAddress": "grpc://study:13000"}},
    "namespaced with no namespace": {"watch": {"allNamespaces": False}},
    "a namespace that is no DNS label": {"watch": {"allNamespaces": False, "namespaces": ["ML_team"]}},
    "an unknown top-level key": {"imagee": {"tag": "x"}},
    "a misspelled pool key": {"nodePools": {"gpu": {"nodeSelectors": {"a": "b"}}}},
    "a pool name with capitals": {"nodePools": {"GPU": {}}},
    "an unknown pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "an unknown artifacts type": {"artifacts": {"type": "nfs"}},
    "s3 without credentials": {"artifacts": {"type": "s3", "s3": {"uri": "s3://models/x"}}},
    "postgresql without a secret": {"tuning": {"study": {"type": "postgresql"}}},
    "an unknown gate": {"promotion": {"requiredGates": ["vibes"]}},
    "a metric threshold that is text": {"promotion": {"minMetric": {"accuracy": "high"}}},
    "a root operator": {"podSecurityContext": {"runAsNonRoot": False}},
    "privilege escalation": {"securityContext": {"allowPrivilegeEscalation": True}},
    "a claim size that is no quantity": {"artifacts": {"pvc": {"size": "lots"}}},
}


@pytest.mark.parametrize("values", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_fail_at_install(values: dict) -> None:
    result = helm("template", "crucible", str(CHART), values=values)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr


def test_docs_tell_how_to_upgrade_the_crds() -> None:
    install = (ROOT / "docs" / "install.md").read_text()
    assert (
        "kubectl apply -f charts/crucible/crds/" in install
        and "crucible crds | kubectl apply -f -" in install
    )


def test_crucible_crds_prints_what_the_chart_ships() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "crucible.cli", "crds"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    chart = [yaml.safe_load(p.read_text()) for p in sorted((CHART / "crds").glob("*.yaml"))]
    assert sorted(
        (d for d in yaml.safe_load_all(printed.stdout) if d), key=lambda d: d["metadata"]["name"]
    ) == sorted(chart, key=lambda d: d["metadata"]["name"])


def documented_values(values_yaml: str) -> set[str]:
    """Dotted paths of the keys values.yaml documents with a `# --` comment."""
    paths, stack, pending = set(), [], False
    for line in values_yaml.splitlines():
        if line.strip().startswith("# --"):
            pending = True
            continue
        match = re.match(r"^( *)([A-Za-z0-9_.-]+):", line)
        if match:
            stack = [*stack[: len(match.group(1)) // 2], match.group(2)]
            if pending:
                paths.add(".".join(stack))
            pending = False
    return paths


def test_docs_say_what_every_value_does() -> None:
    values_yaml = (CHART / "values.yaml").read_text()
    documented = documented_values(values_yaml)
    # Every top-level value is documented, itself or through its keys.
    assert {path.split(".")[0] for path in documented} == set(yaml.safe_load(values_yaml))
    install = (ROOT / "docs" / "install.md").read_text()
    table = install[install.index("## Values") :]
    assert set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.MULTILINE)) == documented
