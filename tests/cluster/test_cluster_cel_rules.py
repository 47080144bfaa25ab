"""Every CEL rule of every CRD, on the real API server: an object that breaks it is refused with the
rule's message at the rule's field path, and the examples (one valid object of each kind) are accepted.

A rule added to crucible/api without a case here fails test_every_rule_has_a_case.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from crucible.api import crd
from tests.cluster.kube import apply, object_path, refusal, request

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    kind: yaml.safe_load((ROOT / "examples" / name).read_text())
    for kind, name in (
        ("TrainingRun", "trainingrun-digits.yaml"),
        ("ModelDeployment", "modeldeployment-digits.yaml"),
        ("TuningJob", "tuningjob-digits.yaml"),
    )
}
RETRAINING = yaml.safe_load((ROOT / "examples" / "modeldeployment-retraining.yaml").read_text())
LR = "hyperparameters.learningRate"


def rules_of(node: dict, path: str = ""):
    """(path, rule) of every x-kubernetes-validations entry; `[*]` stands for a map's values."""
    for rule in node.get("x-kubernetes-validations", []):
        yield path, rule
    for name, child in (node.get("properties") or {}).items():
        yield from rules_of(child, f"{path}.{name}".lstrip("."))
    if isinstance(node.get("additionalProperties"), dict):
        yield from rules_of(node["additionalProperties"], f"{path}[*]")


def with_spec(kind: str, change: Callable[[dict], object], name: str | None = None) -> dict:
    document = copy.deepcopy(EXAMPLES[kind])
    change(document["spec"])
    if name:
        document["metadata"]["name"] = name
    return document


def set_path(**values: object) -> Callable[[dict], None]:
    """A change that sets dotted paths below spec, e.g. set_path(**{"resources.gpu": 0})."""

    def change(spec: dict) -> None:
        for dotted, value in values.items():
            *parents, last = dotted.split(".")
            node = spec
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value

    return change


def retraining(change: Callable[[dict], object]) -> dict:
    """The retraining example, changed."""
    document = copy.deepcopy(RETRAINING)
    change(document["spec"])
    return document


def _no_trigger(spec: dict) -> None:
    for trigger in ("schedule", "minNewLabels", "drift"):
        spec["retraining"].pop(trigger)


def search_space(parameter: dict) -> Callable[[dict], None]:
    return lambda spec: spec["searchSpace"].update({LR: parameter})


def _model(**reference: object) -> Callable[[dict], None]:
    return lambda spec: spec.update(model=reference)


def _untunable(spec: dict) -> None:
    spec["searchSpace"]["gates.debug.enabled"] = {"type": "categorical", "choices": [True, False]}


# (kind, the rule's message (a prefix is enough), the breaking object, the field path of the refusal)
CASES = [
    ("TrainingRun", "uri is required when source is imageFolder",
     with_spec("TrainingRun", set_path(**{"dataset.source": "imageFolder"})), "spec.dataset.uri"),
    ("TrainingRun", "pretrainedWeights must be a path in a mounted volume",
     with_spec("TrainingRun", set_path(**{"model.pretrainedWeights": "https://example.invalid/w.pt"})),
     "spec.model.pretrainedWeights"),
    ("TrainingRun", "the gpu node pool needs gpu >= 1",
     with_spec("TrainingRun", set_path(**{"resources.nodePool": "gpu", "resources.gpu": 0})),
     "spec.resources.gpu"),
    ("TrainingRun", "gpu > 0 needs a node pool with GPUs",
     with_spec("TrainingRun", set_path(**{"resources.nodePool": "cpu", "resources.gpu": 1})),
     "spec.resources.nodePool"),
    ("TrainingRun", "on a cluster uri is pvc://<claim>/<path>",
     with_spec("TrainingRun", set_path(**{"output.uri": "gs://bucket/run"})), "spec.output.uri"),
    ("TrainingRun", "uri must not contain '..'",
     with_spec("TrainingRun", set_path(**{"output.uri": "runs/../other"})), "spec.output.uri"),
    ("ModelDeployment", "metadata.name must start with a lowercase letter",
     with_spec("ModelDeployment", set_path(), name="2024-digits"), "metadata"),
    ("ModelDeployment", "set exactly one of trainingRun, tuningJob, selector",
     with_spec("ModelDeployment", _model(trainingRun="a", tuningJob="b")), "spec.model"),
    ("ModelDeployment", "destination is required when sampleRate is above 0",
     with_spec("ModelDeployment", set_path(**{"capture.sampleRate": 0.5})), "spec.capture.destination"),
    ("ModelDeployment", "the gpu node pool needs gpu >= 1",
     with_spec("ModelDeployment", set_path(**{"resources.nodePool": "gpu", "resources.gpu": 0})),
     "spec.resources.gpu"),
    ("ModelDeployment", "gpu > 0 needs a node pool with GPUs",
     with_spec("ModelDeployment", set_path(**{"resources.nodePool": "cpu", "resources.gpu": 1})),
     "spec.resources.nodePool"),
    ("ModelDeployment", "retraining needs model.selector",
     retraining(_model(trainingRun="a")), "spec.retraining"),
    ("ModelDeployment", "set at least one trigger: schedule, minNewLabels or drift",
     retraining(_no_trigger), "spec.retraining"),
    ("ModelDeployment", "uri is required when source is imageFolder",
     retraining(set_path(**{"retraining.template.spec.dataset.source": "imageFolder"})),
     "spec.retraining.template.spec.dataset.uri"),
    ("ModelDeployment", "pretrainedWeights must be a path in a mounted volume",
     retraining(set_path(**{"retraining.template.spec.model.pretrainedWeights": "https://example.invalid/w"})),
     "spec.retraining.template.spec.model.pretrainedWeights"),
    ("ModelDeployment", "on a cluster uri is pvc://<claim>/<path>",
     retraining(set_path(**{"retraining.template.spec.output.uri": "gs://bucket/runs"})),
     "spec.retraining.template.spec.output.uri"),
    ("ModelDeployment", "uri must not contain '..'",
     retraining(set_path(**{"retraining.template.spec.output.uri": "runs/../other"})),
     "spec.retraining.template.spec.output.uri"),
    ("TuningJob", "the gpu node pool needs gpu >= 1",
     with_spec("TuningJob", set_path(**{"template.resources.nodePool": "gpu", "template.resources.gpu": 0})),
     "spec.template.resources.gpu"),
    ("TuningJob", "gpu > 0 needs a node pool with GPUs",
     with_spec("TuningJob", set_path(**{"template.resources.nodePool": "cpu", "template.resources.gpu": 1})),
     "spec.template.resources.nodePool"),
    ("TuningJob", "searchSpace keys must be paths of tunable template fields",
     with_spec("TuningJob", _untunable), "spec.searchSpace"),
    ("TuningJob", "float and int parameters need low < high",
     with_spec("TuningJob", search_space({"type": "float", "low": 0.1, "high": 0.01})),
     f"spec.searchSpace[{LR}]"),
    ("TuningJob", "a log scale needs low > 0",
     with_spec("TuningJob", search_space({"type": "float", "low": 0, "high": 0.1, "log": True})),
     f"spec.searchSpace[{LR}]"),
    ("TuningJob", "type rdb needs urlSecretRef",
     with_spec("TuningJob", set_path(**{"storage.type": "rdb"})), "spec.storage"),
]  # fmt: skip
# Transition rules (they compare with the stored object): checked by test_transition_rules below.
TRANSITION_RULES = {
    ("TrainingRun", "spec is immutable once the run has started"),
    ("TuningJob", "template, searchSpace and objective are immutable once the search has started"),
}


def test_every_rule_has_a_case() -> None:
    covered = {(kind, message) for kind, message, _, _ in CASES} | TRANSITION_RULES
    for kind in crd.kinds():
        for path, rule in rules_of(crd.openapi_schema(kind)):
            assert any(kind.kind == k and rule["message"].startswith(m) for k, m in covered), (
                f"{kind.kind} {path or '<root>'}: no case for the rule {rule['message']!r}"
            )


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_the_example_of_each_kind_is_accepted(kind: str, kube_api, crucible_crds, namespace: str) -> None:
    assert refusal(kube_api, EXAMPLES[kind], namespace) is None


@pytest.mark.parametrize(
    ("kind", "message", "document", "field"), CASES, ids=[f"{c[0]}: {c[1][:48]}" for c in CASES]
)
def test_a_broken_rule_is_refused_with_its_message_and_field(
    kind: str, message: str, document: dict, field: str, kube_api, crucible_crds, namespace: str
) -> None:
    refused = refusal(kube_api, document, namespace)
    assert refused is not None, f"accepted: {document['spec']}"
    assert refused.code == 422 and refused.reason == "Invalid", refused
    # The refusal names the rule's own field and carries its message (and nothing else is wrong).
    assert len(refused.causes) == 1, refused.causes
    assert refused.fields() == [field], refused
    assert message in refused.cause_messages()[0], refused


def test_the_refusal_reads_well_in_kubectl(kube_api, crucible_crds, namespace: str) -> None:
    document = with_spec("TrainingRun", set_path(**{"resources.nodePool": "gpu", "resources.gpu": 0}))
    refused = refusal(kube_api, document, namespace)
    assert refused.message == (
        'TrainingRun.crucible.dev "digits-mobilenet" is invalid: spec.resources.gpu: '
        "Invalid value: the gpu node pool needs gpu >= 1"
    )


def _started(kind: str, status: dict, kube_api, namespace: str) -> dict:
    """The example created for real, with the status the operator writes once it has started."""
    document = copy.deepcopy(EXAMPLES[kind])
    apply(kube_api, document, namespace)
    path = object_path(kube_api, document, namespace) + "/status"
    request(kube_api, "PATCH", path, body={"status": status}, content_type="application/merge-patch+json")
    return document


def test_transition_rules(kube_api, crucible_crds, namespace: str) -> None:
    run = _started(
        "TrainingRun", {"phase": "Running", "jobName": "digits-mobilenet-train"}, kube_api, namespace
    )
    changed = copy.deepcopy(run)
    changed["spec"]["seed"] = 43
    refused = refusal(kube_api, changed, namespace)
    assert refused is not None and refused.fields() == ["spec"], refused
    assert "spec is immutable once the run has started" in refused.cause_messages()[0]

    job = _started("TuningJob", {"studyName": f"{namespace}.digits-tuning.uid"}, kube_api, namespace)
    more_trials = copy.deepcopy(job)
    more_trials["spec"]["maxTrials"] = 40
    assert refusal(kube_api, more_trials, namespace) is None  # the budget may change
    other_metric = copy.deepcopy(job)
    other_metric["spec"]["objective"]["metric"] = "macroF1"
    refused = refusal(kube_api, other_metric, namespace)
    assert refused is not None and refused.fields() == ["spec"], refused
    assert "template, searchSpace and objective are immutable" in refused.cause_messages()[0]


@pytest.mark.parametrize("name", ["digits.v2", "Digits", "digits-", "2024-digits"])
def test_model_deployment_names_that_cannot_name_a_service_are_refused(
    name: str, kube_api, crucible_crds, namespace: str
) -> None:
    refused = refusal(kube_api, with_spec("ModelDeployment", set_path(), name=name), namespace)
    assert refused is not None and "a Service name is a DNS-1035 label" in refused.message


def test_a_long_model_deployment_name_is_accepted(kube_api, crucible_crds, namespace: str) -> None:
    # Children longer than 63 characters get a hashed name (crucible.operator.kube.naming.child_name).
    name = "digits-" + "a" * 90
    assert refusal(kube_api, with_spec("ModelDeployment", set_path(), name=name), namespace) is None


def test_a_categorical_parameter_with_no_choices_is_refused(kube_api, crucible_crds, namespace: str) -> None:
    # CEL cannot read the schemaless choices, so this is the schema's minItems, not a rule.
    document = with_spec("TuningJob", search_space({"type": "categorical", "choices": []}))
    refused = refusal(kube_api, document, namespace)
    assert refused is not None and refused.fields() == [f"spec.searchSpace.{LR}.choices"], refused
    assert "should have at least 1 items" in refused.cause_messages()[0]
    mixed = with_spec("TuningJob", search_space({"type": "categorical", "choices": [0.01, "0.1", 1, True]}))
    assert refusal(kube_api, mixed, namespace) is None
