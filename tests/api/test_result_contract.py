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


def test_long_file_names_of_skipped_files_give_way_before_any_verdict_or_figure():
    long_name = "photos/" + "a-very-long-folder-name/" * 12 + "IMG_0001.JPG"
    dataset = {
        "badFiles": 7,
        "badFileExamples": [long_name] * 5,
        "ignoredFolders": {"count": 12, "names": [long_name[:200]] * 10},
    }
    result = TrainResult(
        phase="Succeeded",
        gates={name: GateReport(passed=True, checks={"c": Check(value=1, threshold=0, passed=True)}) for name in "abc"},
        metrics={f"metric{i}": 0.5 for i in range(40)},
        dataset=dataset,
        fingerprints={"dataset": "0" * 16, "classes": "1" * 16, "heldOut": "2" * 16},
    )  # fmt: skip
    assert len(json.dumps(result.model_dump())) > 4096
    document = json.loads(result.to_json())
    assert len(result.to_json()) <= 4096
    assert document["dataset"] == {"badFiles": 7, "ignoredFolders": {"count": 12}}
    assert len(document["metrics"]) == 40 and document["fingerprints"]["heldOut"] == "2" * 16
