"""spec.evaluation.testSets: extra labelled folders the exported model is scored on, reported apart,
and held to a minimum when one is set."""

from __future__ import annotations

import pytest

from crucible.api.manifest import InvalidSpec, parse_spec
from crucible.trainer.run import RunContext, train
from tests.conftest import fast_spec
from tests.trainer.test_sources_and_models import _image_folder


def test_test_sets_are_scored_and_a_minimum_is_enforced(tmp_path):
    root = _image_folder(tmp_path / "shapes")
    fresh = _image_folder(tmp_path / "fresh", per_class=6)
    swapped = _image_folder(tmp_path / "swapped", per_class=6)
    (swapped / "circle").rename(swapped / "tmp")
    (swapped / "square").rename(swapped / "circle")
    (swapped / "tmp").rename(swapped / "square")
    spec = fast_spec(
        dataset={"source": "imageFolder", "uri": str(root), "imageSize": 16},
        hyperparameters={"epochs": 8, "batchSize": 16},
        gates={"debug": {"enabled": False}, "crossValidation": {"enabled": False}},
        evaluation={
            "testSets": [
                {"name": "fresh", "uri": f"file://{fresh}", "minScore": 0.8},
                {"name": "swapped", "uri": str(swapped), "minScore": 0.8},
            ]
        },
    )
    result = train(spec, RunContext(name="shapes", output_dir=tmp_path / "out", device="cpu"))
    checks = result.gates["testSets"].checks
    assert checks["fresh"].passed and result.metrics["testSet.fresh"] >= 0.8
    assert not checks["swapped"].passed and result.metrics["testSet.swapped"] < 0.8
    assert result.phase == "Failed"
    assert result.reason.startswith("testSets gate failed: swapped: balancedAccuracy 0.")
    assert result.reason.endswith("on test set 'swapped' is below its minScore 0.8")
    assert not (tmp_path / "out" / "model.pt").exists()


def test_test_set_names_are_unique_and_folders_local():
    with pytest.raises(InvalidSpec, match=r"spec.evaluation.testSets: .*repeated: a"):
        parse_spec(
            "TrainingRun",
            {"evaluation": {"testSets": [{"name": "a", "uri": "/x"}, {"name": "a", "uri": "/y"}]}},
        )
    with pytest.raises(
        InvalidSpec, match=r"spec.evaluation.testSets\[0\].uri: .*must be a local path or file://"
    ):
        parse_spec("TrainingRun", {"evaluation": {"testSets": [{"name": "a", "uri": "s3://bucket/test"}]}})
