"""The TuningJob CRD's names and printer columns, as generated (no API server needed).

Its CEL rules (unknown search paths, low < high, the immutable search) are tested on a real API server
in tests/cluster/test_cluster_cel_rules.py."""

from __future__ import annotations

from tests.operator.test_crds import DEFINITIONS


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
