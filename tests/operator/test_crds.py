"""The CRDs: generated from the models, valid CustomResourceDefinitions, and the examples pass them."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml

from crucible.api import crd
from crucible.api.modeldeployment import ModelDeploymentSpec
from crucible.api.schema import SchemaError, structural_schema

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.33"
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


@pytest.mark.parametrize("kind", DEFINITIONS)
def test_crds_are_valid_apiextensions_objects(kind: str) -> None:
    kubernetes_validate.validate(DEFINITIONS[kind], KUBERNETES_VERSION, strict=True)


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


# --- Validating documents the way the API server does: the schema, then the CEL rules. -------------


def _json_schema(node: dict) -> dict:
    """OpenAPI's `nullable` as JSON Schema (draft 4 reads the boolean exclusive bounds as they are)."""
    node = {key: value for key, value in node.items() if not key.startswith("x-kubernetes")}
    if node.pop("nullable", False):
        node["type"] = [node["type"], "null"]
    for key in ("properties",):
        if key in node:
            node[key] = {name: _json_schema(child) for name, child in node[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _json_schema(node[key])
    return node


def _cel_rules(node: dict, path: str = ""):
    for rule in node.get("x-kubernetes-validations", []):
        yield path, rule
    for name, child in (node.get("properties") or {}).items():
        yield from _cel_rules(child, f"{path}.{name}".lstrip("."))


def _at(document: dict, path: str) -> object:
    for part in filter(None, path.split(".")):
        if not isinstance(document, dict) or part not in document:
            return None
        document = document[part]
    return document


def cel_violations(kind: str, document: dict, old: dict | None = None) -> list[str]:
    environment = celpy.Environment()
    messages = []
    for path, rule in _cel_rules(schema_of(kind)):
        value = _at(document, path)
        if value is None or ("oldSelf" in rule["rule"] and old is None):
            continue  # rules run on present fields; transition rules only on updates
        activation = {"self": celpy.json_to_cel(value)}
        if old is not None:
            activation["oldSelf"] = celpy.json_to_cel(_at(old, path))
        program = environment.program(environment.compile(rule["rule"]))
        if not program.evaluate(activation):
            messages.append(f"{path}: {rule['message']}")
    return messages


def admission_errors(document: dict, old: dict | None = None) -> list[str]:
    kind = document["kind"]
    validator = jsonschema.Draft4Validator(_json_schema(schema_of(kind)))
    errors = [
        f"{'.'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(document)
    ]
    return errors + cel_violations(kind, document, old)


EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_there_is_an_example_of_each_kind() -> None:
    kinds = {yaml.safe_load(path.read_text())["kind"] for path in EXAMPLES}
    assert {"TrainingRun", "ModelDeployment", "TuningJob"} <= kinds


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_examples_pass_their_crd(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        if document and document["kind"] in DEFINITIONS:
            assert admission_errors(document) == []


def training_run(spec: dict) -> dict:
    return {
        "apiVersion": "crucible.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "r"},
        "spec": spec,
    }


def test_schema_refuses_what_the_models_refuse() -> None:
    errors = admission_errors(training_run({"gates": {"crossValidation": {"folds": 1}}}))
    assert any("folds" in error for error in errors)
    errors = admission_errors(training_run({"model": {"architecture": "vgg"}}))
    assert any("architecture" in error for error in errors)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"resources": {"nodePool": "gpu", "gpu": 0}}, "the gpu node pool needs gpu >= 1"),
        ({"resources": {"nodePool": "cpu", "gpu": 1}}, "gpu > 0 needs a node pool with GPUs"),
        ({"dataset": {"source": "imageFolder"}}, "uri is required when source is imageFolder"),
        ({"output": {"uri": "gs://bucket/run"}}, "on a cluster uri is pvc://"),
        ({"output": {"uri": "runs/../other"}}, "must not contain '..'"),
        ({"model": {"pretrainedWeights": "https://example.invalid/w.pt"}}, "nothing is downloaded"),
    ],
)
def test_cel_rules_refuse_cross_field_mistakes(spec: dict, message: str) -> None:
    assert any(message in error for error in admission_errors(training_run(spec)))


@pytest.mark.parametrize("output", ["pvc://artifacts/runs/a", "s3://models/runs/a", "runs/a"])
def test_cel_rules_accept_good_specs(output: str) -> None:
    good = {"resources": {"nodePool": "gpu", "gpu": 1}, "output": {"uri": output}}
    assert admission_errors(training_run(good)) == []


def test_spec_is_immutable_once_the_run_has_started() -> None:
    old = training_run({"seed": 1})
    new = training_run({"seed": 2})
    assert cel_violations("TrainingRun", new, old={**old, "status": {"phase": "Pending"}}) == []
    started = {**copy.deepcopy(old), "status": {"phase": "Running", "jobName": "r-train"}}
    assert cel_violations("TrainingRun", new, old=started) == [
        ": spec is immutable once the run has started; create a new TrainingRun instead"
    ]


def test_model_deployment_gpu_rule() -> None:
    document = yaml.safe_load((ROOT / "examples" / "modeldeployment-digits.yaml").read_text())
    document["spec"]["resources"] = {"nodePool": "gpu", "gpu": 0}
    assert cel_violations("ModelDeployment", document) == ["spec.resources: the gpu node pool needs gpu >= 1"]
    assert ModelDeploymentSpec.model_validate(document["spec"]).resources.node_pool == "gpu"
