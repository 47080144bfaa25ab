"""The TuningJob CRD: names and columns, and CEL refusing what the issue names at apply time."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from tests.operator.test_crds import DEFINITIONS, admission_errors

EXAMPLE = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "examples" / "tuningjob-digits.yaml").read_text()
)


def test_short_name_and_columns() -> None:
    spec = DEFINITIONS["TuningJob"]["spec"]
    assert spec["names"]["shortNames"] == ["tj"]
    columns = {
        c["name"]: c["jsonPath"]
        for c in spec["versions"][0]["additionalPrinterColumns"]
        if not c.get("priority")
    }
    assert columns == {
        "Phase": ".status.phase",
        "Trials": ".status.progress",
        "Best": ".status.bestTrial.value",
        "Metric": ".spec.objective.metric",
        "Age": ".metadata.creationTimestamp",
    }


def test_the_example_passes_and_unknown_paths_do_not() -> None:
    # The per-parameter rules (low < high, choices) sit under additionalProperties, which this
    # harness does not walk; tests/tuning/test_tuningjob_spec.py evaluates those.
    assert admission_errors(EXAMPLE) == []
    document = copy.deepcopy(EXAMPLE)
    document["spec"]["searchSpace"] = {"hyperparameters.learnRate": {"type": "float", "low": 0.1, "high": 1}}
    assert any("paths of tunable template fields" in error for error in admission_errors(document))


def test_the_search_is_immutable_once_started_but_its_budget_is_not() -> None:
    old = copy.deepcopy(EXAMPLE) | {"status": {"studyName": "default.digits-tuning.uid"}}
    more = copy.deepcopy(old)
    more["spec"]["maxTrials"] = 20
    assert admission_errors(more, old) == []
    other = copy.deepcopy(old)
    other["spec"]["objective"]["metric"] = "macroF1"
    assert any("immutable once the search has started" in e for e in admission_errors(other, old))
