"""The CRD generator: the files in crds/ are what the models generate, and the schemas carry what the
generator promises (descriptions for `kubectl explain`, defaults, enums, bounds, columns), which no
API server checks.

Whether the API server accepts the CRDs, and refuses and accepts documents by their schemas and CEL
rules, is tested on a real one (tests/cluster/): the emulation that used to stand here (jsonschema,
celpy, kubernetes-validate) accepted CRDs and rules that Kubernetes refuses, so it is gone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crucible.api import crd
from crucible.api.schema import SchemaError, structural_schema

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = {kind.kind: crd.custom_resource_definition(kind) for kind in crd.kinds()}


def schema_of(kind: str) -> dict:
    return DEFINITIONS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_crd_files_match_the_models() -> None:
    for kind in crd.kinds():
        path = ROOT / "crds" / crd.file_name(kind)
        expected = crd.render(crd.custom_resource_definition(kind))
        assert path.read_text() == expected, f"{path} is stale: run `crucible crds --output-dir crds`"


def test_crucible_crds_prints_every_definition() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "crucible", "crds"], capture_output=True, text=True, check=True
    ).stdout
    documents = [doc for doc in yaml.safe_load_all(printed) if doc]
    assert [doc["metadata"]["name"] for doc in documents] == [
        "trainingruns.crucible.dev",
        "modeldeployments.crucible.dev",
        "tuningjobs.crucible.dev",
    ]


def _walk(node: dict, path: str, field: bool = True):
    """Every schema node, and whether it is a field (kubectl explain describes fields)."""
    yield path, node, field
    for name, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}.*", field=False)
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]", field=False)


@pytest.mark.parametrize("kind", DEFINITIONS)
def test_schemas_are_structural_and_described(kind: str) -> None:
    for path, node, field in _walk(schema_of(kind), kind):
        if path == f"{kind}.metadata":  # the API server's own; it refuses anything more
            assert node == {"type": "object"}
            continue
        assert node.get("description") or not field, f"{path} has no description"
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        assert not {"$ref", "anyOf", "allOf", "oneOf", "title"} & set(node), f"{path} is not structural"
        assert not ("properties" in node and "additionalProperties" in node), path


def test_schema_carries_defaults_enums_and_bounds() -> None:
    spec = schema_of("TrainingRun")["properties"]["spec"]["properties"]
    folds = spec["gates"]["properties"]["crossValidation"]["properties"]["folds"]
    assert (folds["minimum"], folds["maximum"], folds["default"]) == (2, 20, 5)
    assert "tiny_cnn" in spec["model"]["properties"]["architecture"]["enum"]
    learning_rate = spec["hyperparameters"]["properties"]["learningRate"]
    assert (learning_rate["minimum"], learning_rate["exclusiveMinimum"]) == (0, True)
    md = schema_of("ModelDeployment")["properties"]["spec"]
    assert md["required"] == ["model"]
    assert md["properties"]["rollout"]["properties"]["strategy"]["enum"] == ["RollingUpdate", "Canary"]


def test_names_columns_and_status_subresource() -> None:
    training = DEFINITIONS["TrainingRun"]["spec"]
    assert training["names"]["shortNames"] == ["tr"] and training["names"]["categories"] == ["crucible"]
    version = training["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [column["name"] for column in version["additionalPrinterColumns"] if not column.get("priority")]
    assert columns == ["Phase", "Architecture", "CV Mean", "Accuracy", "Age"]
    serving = DEFINITIONS["ModelDeployment"]["spec"]
    assert serving["names"]["shortNames"] == ["md"]
    columns = [c["name"] for c in serving["versions"][0]["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Ready", "Model", "Candidate", "Canary", "Pool", "Replicas", "Age"]


def test_unions_other_than_optional_are_refused() -> None:
    from pydantic import BaseModel, Field

    class Mixed(BaseModel):
        value: int | str = Field(0, description="either")

    with pytest.raises(SchemaError, match="value"):
        structural_schema(Mixed)


def test_every_field_needs_a_description() -> None:
    from pydantic import BaseModel

    class Bare(BaseModel):
        value: int = 0

    with pytest.raises(SchemaError, match="description"):
        structural_schema(Bare)
