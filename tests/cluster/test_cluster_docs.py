"""What the docs say about the API server, checked on the real one: every example in examples/ is
accepted, docs/operator.md lists every CEL rule with the exact message it is refused with, and the
refusal it shows is what kubectl prints."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from crucible.api import crd
from tests.cluster.controlplane import ControlPlane
from tests.cluster.kube import apply
from tests.cluster.test_cluster_cel_rules import rules_of

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = ROOT / ".tools" / "bin" / "kubectl"
OPERATOR_DOC = (ROOT / "docs" / "operator.md").read_text()
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_is_accepted(path: Path, kube_api, crucible_crds, namespace: str) -> None:
    documents = [document for document in yaml.safe_load_all(path.read_text()) if document]
    assert documents
    for document in documents:
        applied = apply(kube_api, document, namespace)
        assert applied["spec"], f"{path.name}: {document['kind']} stored without its spec"


def documented_messages() -> set[str]:
    """The `refused with` column of docs/operator.md's table of rules."""
    rows = re.findall(r"^\| [^|]+ \| [^|]+ \| `([^`]+)` \|$", OPERATOR_DOC, flags=re.MULTILINE)
    return set(rows)


def test_the_docs_list_every_rule_with_its_exact_message() -> None:
    messages = {rule["message"] for kind in crd.kinds() for _, rule in rules_of(crd.openapi_schema(kind))}
    assert documented_messages() == messages


@pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl is not in .tools/bin (scripts/fetch-tools.sh)")
def test_the_documented_refusal_is_what_kubectl_prints(
    control_plane: ControlPlane, crucible_crds, namespace: str, tmp_path: Path
) -> None:
    command, printed = re.search(r"^\$ kubectl apply -f (\S+)\n(.+)$", OPERATOR_DOC, re.MULTILINE).groups()
    document = yaml.safe_load((ROOT / "examples" / "modeldeployment-digits.yaml").read_text())
    renamed = copy.deepcopy(document)
    renamed["metadata"]["name"] = "digits.v2"
    (tmp_path / command).write_text(yaml.safe_dump(renamed))
    result = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace, "apply", "-f", command],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip() == printed
