"""The control-plane fixture itself: RBAC is enforced, ServiceAccount tokens work, a start-up failure
says why, and the controllers act on request."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from tests.cluster.controlplane import ControlPlane, ControlPlaneError
from tests.cluster.kube import wait_for


def test_a_service_account_token_gets_only_what_its_cluster_role_grants(
    control_plane: ControlPlane, kube_api, namespace: str, tmp_path: Path
) -> None:
    role = {
        "metadata": {"name": f"{namespace}-config-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }
    client.RbacAuthorizationV1Api(kube_api).create_cluster_role(role)
    kubeconfig = control_plane.service_account_kubeconfig(
        namespace, "reader", role["metadata"]["name"], tmp_path / "kubeconfig"
    )
    with control_plane.api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        assert core.list_namespaced_config_map(namespace).items is not None
        with pytest.raises(client.ApiException) as refused:
            core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata={"name": "x"}))
    assert refused.value.status == 403
    assert f"system:serviceaccount:{namespace}:reader" in refused.value.body


def test_a_process_that_exits_at_start_up_shows_its_log(tmp_path: Path) -> None:
    assets = tmp_path / "bin"
    assets.mkdir()
    for name in ("etcd", "kube-apiserver"):
        (assets / name).write_text(f"#!/bin/sh\necho '{name}: cannot listen' >&2\nexit 3\n")
        (assets / name).chmod(0o755)
    plane = ControlPlane(assets=assets, directory=tmp_path / "plane")
    with pytest.raises(ControlPlaneError, match=r"exited with 3[\s\S]*cannot listen"):
        plane.start(timeout=10)
    plane.stop()
    assert not plane.processes


def test_the_controllers_run_on_request(cluster_controllers: ControlPlane, kube_api, namespace: str) -> None:
    labels = {"app": "web"}
    deployment = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "web"}]},
            },
        },
    }
    client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, deployment)
    apps = client.AppsV1Api(kube_api)
    replica_sets = wait_for(lambda: apps.list_namespaced_replica_set(namespace).items, timeout=30,
                            what="the Deployment controller makes a ReplicaSet")  # fmt: skip
    assert replica_sets[0].metadata.owner_references[0].name == "web"
