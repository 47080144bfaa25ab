from __future__ import annotations

from pathlib import Path

import pytest

from crucible.api.manifest import InvalidSpec, load_file, parse_spec
from crucible.api.trainingrun import TrainingRunSpec

EXAMPLE = Path(__file__).parents[2] / "examples" / "trainingrun-digits.yaml"


def test_the_example_is_a_complete_trainingrun():
    resource = load_file(EXAMPLE, expected_kind="TrainingRun")
    assert resource.name == "digits-mobilenet"
    assert resource.spec.model.architecture == "mobilenet_v3_small"
    assert resource.spec.gates.cross_validation.min_mean == 0.95


def test_defaults_are_filled_in_camel_case():
    spec = TrainingRunSpec().to_dict()
    assert spec["hyperparameters"]["batchSize"] == 64
    # Chance-relative by default: balanced accuracy, no absolute floor, baselines and held-out checks on.
    assert spec["gates"]["crossValidation"] == {
        "enabled": True, "folds": 5, "epochs": 6, "metric": "balancedAccuracy", "minMean": 0.0, "maxStd": 0.05,
    }  # fmt: skip
    assert spec["gates"]["baseline"] == {"enabled": True, "minLift": 0.05, "thumbnailSize": 3}
    assert spec["gates"]["heldOut"] == {"enabled": True, "tolerance": 0.1}
    assert (
        spec["gates"]["debug"]["overfitLossFraction"] == 0.1
        and spec["gates"]["debug"]["overfitLossBound"] is None
    )
    assert spec["hyperparameters"]["earlyStopping"] is None
    assert spec["dataset"]["validationFraction"] == 0.1 and spec["dataset"]["splitSeed"] == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"gates": {"crossValidation": {"folds": 1}}}, "spec.gates.crossValidation.folds: Input should be greater than or equal to 2"),
        ({"dataset": {"source": "mnist"}}, "spec.dataset.source: 'mnist' is not allowed; allowed values: 'digits', 'fake' or 'imageFolder'"),
        ({"dataset": {"source": "imageFolder"}}, "spec.dataset: uri is required when source is imageFolder"),
        ({"model": {"pretrainedWeights": "https://example.org/w.pt"}}, "spec.model.pretrainedWeights: must be a local path"),
        ({"hyperparameters": {"optimizer": "lamb"}}, "allowed values: 'adamw', 'adam' or 'sgd'"),
        ({"seed": "x"}, "spec.seed: Input should be a valid integer"),
        ({"hyperparameters": {"augmentation": {"rotate": True}}}, "spec.hyperparameters.augmentation.rotate: unknown field; allowed fields: randomCrop, cropPadding, horizontalFlip"),
    ],
)  # fmt: skip
def test_invalid_specs_name_the_field_and_what_is_allowed(spec, message):
    with pytest.raises(InvalidSpec) as caught:
        parse_spec("TrainingRun", spec)
    assert message in str(caught.value)
