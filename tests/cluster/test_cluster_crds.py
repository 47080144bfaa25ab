"""The CRDs of crds/ on the real API server: they install, and each becomes Established."""

from __future__ import annotations

from tests.cluster.fixtures import condition


def test_every_crd_installs_and_becomes_established(crucible_crds: list[dict]) -> None:
    names = sorted(crd["metadata"]["name"] for crd in crucible_crds)
    assert names == ["modeldeployments.crucible.dev", "trainingruns.crucible.dev", "tuningjobs.crucible.dev"]
    for crd in crucible_crds:
        for kind in ("NamesAccepted", "Established"):
            assert condition(crd, kind)["status"] == "True", (crd["metadata"]["name"], crd["status"])


def test_the_api_server_is_kubernetes_1_35(control_plane) -> None:
    version = control_plane.version()
    assert (version["major"], version["minor"].rstrip("+")) == ("1", "35"), version
