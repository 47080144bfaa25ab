"""The CRDs of crds/ on the real API server: they install, and each becomes Established."""

from __future__ import annotations

from pathlib import Path

from tests.cluster.fixtures import condition

ROOT = Path(__file__).resolve().parents[2]


def test_every_crd_installs_and_becomes_established(crucible_crds: list[dict]) -> None:
    names = sorted(crd["metadata"]["name"] for crd in crucible_crds)
    assert names == ["modeldeployments.crucible.dev", "trainingruns.crucible.dev", "tuningjobs.crucible.dev"]
    for crd in crucible_crds:
        for kind in ("NamesAccepted", "Established"):
            assert condition(crd, kind)["status"] == "True", (crd["metadata"]["name"], crd["status"])


def test_docs_name_the_kubernetes_version_the_suite_runs_on(control_plane) -> None:
    version = control_plane.version()
    minor = f"{version['major']}.{version['minor'].rstrip('+')}"
    release = version["gitVersion"].split(".snapshot")[0]  # v1.35.0-alpha.0.snapshot-<commit>
    install = (ROOT / "docs" / "install.md").read_text()
    assert f"**Tested on** Kubernetes {minor} (`{release}`" in install, version
