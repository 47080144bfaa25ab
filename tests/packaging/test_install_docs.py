"""README.md and docs/install.md tell one story of namespaces (issue 12, defect 16): the examples are
applied in a namespace where the documented `helm install` creates the artifacts claim, so a reader
who follows either never meets a run waiting for a claim that is not there."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest
import yaml

from tests.packaging.chart import CHART, HELM, RELEASE, ROOT, needs_helm

DOCS = {name: (ROOT / name).read_text() for name in ("README.md", "docs/install.md")}


def commands(text: str) -> list[str]:
    """Each command of the document's bash blocks, continuation lines joined, comments dropped."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        found += [line.split(" #")[0].strip() for line in joined.splitlines() if line.strip()]
    return found


def helm_install(text: str) -> list[str]:
    (command,) = [c for c in commands(text) if c.startswith("helm install crucible charts/crucible")]
    return shlex.split(command)


def example_namespaces(text: str) -> set[str]:
    return {
        words[words.index("-n") + 1]
        for words in map(shlex.split, commands(text))
        if words[:2] == ["kubectl", "apply"] and "-n" in words and any("examples/" in w for w in words)
    }


@needs_helm
@pytest.mark.parametrize("name", DOCS)
def test_the_documented_install_creates_the_artifacts_claim_where_the_examples_are_applied(name: str) -> None:
    words = helm_install(DOCS[name])
    namespace = words[words.index("-n") + 1]
    settings = [word for index, word in enumerate(words) if index and words[index - 1] == "--set"]
    command = [str(HELM), "template", RELEASE, str(CHART), "--namespace", namespace]
    for setting in settings:
        command += ["--set", setting]
    rendered = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    claims = {
        document["metadata"]["namespace"]
        for document in yaml.safe_load_all(rendered)
        if document and document["kind"] == "PersistentVolumeClaim"
        and document["metadata"]["name"] == "crucible-artifacts"
    }  # fmt: skip
    applied = example_namespaces(DOCS[name])
    assert applied, f"{name} applies no example"
    assert applied <= claims, f"{name} applies examples in {applied - claims}, which get no artifacts claim"
    for created in applied - {namespace}:
        assert f"kubectl create namespace {created}" in commands(DOCS[name]), f"{name}: {created} is not made"
