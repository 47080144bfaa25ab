"""spec.retraining of a ModelDeployment: the example is valid, bad policies are refused naming the field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from crucible.api.manifest import InvalidSpec, parse_spec

EXAMPLE = yaml.safe_load(
    (Path(__file__).parents[2] / "examples" / "modeldeployment-retraining.yaml").read_text()
)


def spec_with(**retraining: object) -> dict:
    spec = copy.deepcopy(EXAMPLE["spec"])
    spec["retraining"].update(retraining)
    return {key: value for key, value in spec.items()}


def test_the_example_reads_with_its_defaults() -> None:
    spec = parse_spec("ModelDeployment", EXAMPLE["spec"])
    policy = spec.retraining
    assert policy is not None
    assert (policy.min_new_labels, policy.schedule, policy.drift.threshold) == (300, "0 3 * * 0", 0.2)
    assert (policy.max_concurrent, policy.history_limit) == (1, 5)
    assert policy.template.metadata.labels == {"crucible.dev/model": "digits"}
    bare = spec_with()
    for key in ("maxConcurrent", "historyLimit"):
        bare["retraining"].pop(key)
    defaults = parse_spec("ModelDeployment", bare).retraining
    assert (defaults.max_concurrent, defaults.history_limit) == (1, 5)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"schedule": "0 3 * *"}, "spec.retraining.schedule", "has 4 fields"),
        ({"schedule": "0 25 * * *"}, "spec.retraining.schedule", "hour: 25 is outside 0-23"),
        ({"minNewLabels": 0}, "spec.retraining.minNewLabels", "greater than or equal to 1"),
        ({"drift": {"threshold": 1.5}}, "spec.retraining.drift.threshold", "less than or equal to 1"),
        ({"maxConcurrent": 0}, "spec.retraining.maxConcurrent", "greater than or equal to 1"),
        ({"schedule": None, "minNewLabels": None, "drift": None}, "spec.retraining", "set at least one"),
    ],
)
def test_a_bad_policy_names_its_field(change: dict, field: str, message: str) -> None:
    with pytest.raises(InvalidSpec) as refused:
        parse_spec("ModelDeployment", spec_with(**change))
    assert refused.value.field == field and message in str(refused.value)


def test_runs_the_selector_would_not_pick_are_refused() -> None:
    unpicked = spec_with(template={"metadata": {"labels": {"team": "a"}}, "spec": {}})
    with pytest.raises(InvalidSpec, match=r"must include model\.selector\.matchLabels"):
        parse_spec("ModelDeployment", unpicked)
    pinned = spec_with()
    pinned["model"] = {"trainingRun": "digits"}
    with pytest.raises(InvalidSpec, match=r"retraining needs model\.selector"):
        parse_spec("ModelDeployment", pinned)


def test_the_docs_show_the_example() -> None:
    text = (Path(__file__).parents[2] / "docs" / "feedback.md").read_text()
    shown = [block.split("```")[0] for block in text.split("```yaml\n")[1:]]
    assert EXAMPLE in [yaml.safe_load(block) for block in shown]
