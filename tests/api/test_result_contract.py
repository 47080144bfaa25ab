from __future__ import annotations

import json

from crucible.api.result import Check, GateReport, TrainResult, parse_result


def test_result_round_trips_and_nan_becomes_null():
    result = TrainResult(
        phase="Failed",
        reason="debug gate failed: overfitOneBatch = not finite (must be < 0.2)",
        gates={"debug": GateReport(passed=False, checks={"overfitOneBatch": Check(value=float("nan"), threshold=0.2, passed=False)})},
    )  # fmt: skip
    text = result.to_json()
    assert json.loads(text)["gates"]["debug"]["checks"]["overfitOneBatch"]["value"] is None
    assert parse_result(text).gates["debug"].passed is False


def test_result_stays_under_the_termination_message_limit():
    folds = [0.9 + i / 1000 for i in range(20)]
    result = TrainResult(
        phase="Failed",
        reason="x" * 5000,
        gates={"crossValidation": GateReport(passed=False, mean=0.9, std=0.01, folds=folds)},
        metrics={f"metric{i}": 0.5 for i in range(10)},
    )
    text = result.to_json()
    assert len(text) <= 4096
    document = json.loads(text)
    assert document["phase"] == "Failed" and document["gates"]["crossValidation"]["passed"] is False
    assert document["reason"].endswith("...")
