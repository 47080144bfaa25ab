"""The TuningJob spec: defaults, and errors that name the field and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from crucible.api.manifest import InvalidSpec, load_file, parse_spec
from crucible.api.tuningjob import TuningJobSpec
from tests.tuning.jobs import FAST_TEMPLATE, job_document, job_spec

EXAMPLE = Path(__file__).parents[2] / "examples" / "tuningjob-digits.yaml"
LR = "hyperparameters.learningRate"


def test_the_example_is_a_complete_tuningjob():
    resource = load_file(EXAMPLE, expected_kind="TuningJob")
    spec = resource.spec
    assert resource.name == "digits-tuning"
    assert spec.max_trials == 12
    assert set(spec.search_space) == {LR, "hyperparameters.weightDecay", "hyperparameters.batchSize"}
    assert spec.objective.resolved_direction() == "maximize"


def test_defaults_are_filled_in_camel_case():
    spec = TuningJobSpec.model_validate(
        {"template": {}, "searchSpace": {LR: {"type": "float", "low": 0.001, "high": 0.1}}}
    )
    document = spec.to_dict()
    assert document["sampler"] == {"type": "tpe", "seed": None, "nStartupTrials": None}
    assert document["pruner"]["type"] == "median"
    assert (document["maxTrials"], document["parallelism"], document["baselineTrial"]) == (20, 1, True)
    assert document["storage"] == {"type": "sqlite", "volumeClaim": None, "urlSecretRef": None}


@pytest.mark.parametrize(
    ("metric", "direction"),
    [("accuracy", "maximize"), ("macroF1", "maximize"), ("loss", "minimize"), ("trainSeconds", "minimize")],
)
def test_direction_follows_the_metric_unless_given(metric, direction):
    assert job_spec(objective={"metric": metric}).objective.resolved_direction() == direction
    assert (
        job_spec(objective={"metric": metric, "direction": "maximize"}).objective.resolved_direction()
        == "maximize"
    )


def _space(**params) -> dict:
    return {"searchSpace": {path.replace("__", "."): value for path, value in params.items()}}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (_space(hyperparameters__learningRate={"type": "float", "low": 0.1, "high": 0.01}), f"spec.searchSpace.{LR}.low: must be less than high (got low 0.1, high 0.01)"),
        (_space(hyperparameters__learningRate={"type": "float", "low": 0.1, "high": 0.1}), f"spec.searchSpace.{LR}.low: must be less than high"),
        (_space(hyperparameters__learningRate={"type": "float", "low": 0, "high": 0.1, "log": True}), f"spec.searchSpace.{LR}.low: must be > 0 when log is true"),
        (_space(hyperparameters__learningRate={"type": "float", "high": 0.1}), f"spec.searchSpace.{LR}.low: is required for type float"),
        (_space(hyperparameters__learningRate={"type": "float", "low": 1e-4, "high": 0.1, "log": True, "step": 0.01}), f"spec.searchSpace.{LR}.step: cannot be combined with log"),
        (_space(hyperparameters__learningRate={"type": "float", "low": 1e-4, "high": 200}), f"spec.searchSpace.{LR}.high: 200.0 is not valid for {LR}: Input should be less than or equal to 100"),
        (_space(hyperparameters__learningRate={"type": "gaussian", "low": 1e-4, "high": 0.1}), f"spec.searchSpace.{LR}.type: 'gaussian' is not allowed; allowed values: 'float', 'int' or 'categorical'"),
        (_space(hyperparameters__optimizer={"type": "categorical", "choices": []}), "spec.searchSpace.hyperparameters.optimizer.choices: must list at least one value for type categorical"),
        (_space(hyperparameters__optimizer={"type": "categorical"}), "spec.searchSpace.hyperparameters.optimizer.choices: must list at least one value"),
        (_space(hyperparameters__optimizer={"type": "categorical", "choices": ["adam", "lamb"]}), "spec.searchSpace.hyperparameters.optimizer.choices: 'lamb' is not valid for hyperparameters.optimizer: Input should be 'adamw', 'adam' or 'sgd'"),
        (_space(hyperparameters__optimizer={"type": "categorical", "choices": ["adam", "adam"]}), "spec.searchSpace.hyperparameters.optimizer.choices: must not repeat a value"),
        (_space(hyperparameters__optimizer={"type": "int", "low": 1, "high": 3}), "spec.searchSpace.hyperparameters.optimizer.type: the field takes enum values: use type categorical"),
        (_space(hyperparameters__batchSize={"type": "int", "low": 8, "high": 64, "choices": [8]}), "spec.searchSpace.hyperparameters.batchSize.choices: applies to categorical parameters only"),
        (_space(hyperparameters__batchSize={"type": "int", "low": 8.5, "high": 64}), "spec.searchSpace.hyperparameters.batchSize.low: must be a whole number for type int"),
        (_space(hyperparameters__epochs={"type": "float", "low": 1, "high": 5}), "spec.searchSpace.hyperparameters.epochs.type: the field takes whole numbers: use type int or categorical"),
        (_space(hyperparameters__learnRate={"type": "float", "low": 0.001, "high": 0.1}), "spec.searchSpace.hyperparameters.learnRate: not a field of the template; tunable paths: dataset.imageSize, model.architecture"),
        (_space(hyperparameters={"type": "float", "low": 0.001, "high": 0.1}), "spec.searchSpace.hyperparameters: names a section or a list, not one value"),
        (_space(gates__crossValidation__minMean={"type": "float", "low": 0.5, "high": 0.9}), "spec.searchSpace.gates.crossValidation.minMean: cannot be tuned: gates are the bar every trial must pass"),
        (_space(seed={"type": "int", "low": 1, "high": 9}), "spec.searchSpace.seed: cannot be tuned: the seed also picks the held-out split"),
        ({"searchSpace": {}}, "spec.searchSpace: Dictionary should have at least 1 item"),
        ({"sampler": {"type": "bayes"}}, "spec.sampler.type: 'bayes' is not allowed; allowed values: 'tpe', 'random', 'cmaes' or 'grid'"),
        ({"sampler": {"type": "grid"}}, f"spec.searchSpace.{LR}.step: the grid sampler needs a step for type float"),
        ({"pruner": {"type": "asha"}}, "spec.pruner.type: 'asha' is not allowed; allowed values: 'median', 'hyperband' or 'none'"),
        ({"pruner": {"type": "hyperband", "minResource": 3}}, "spec.pruner.minResource: must be less than the most epochs a trial trains (3)"),
        ({"objective": {"metric": "f1"}}, "spec.objective.metric: 'f1' is not allowed; allowed values: 'accuracy', 'macroF1', 'loss', 'cvMean'"),
        ({"objective": {"metric": "cvMean"}}, "spec.objective.metric: cvMean needs template.gates.crossValidation.enabled"),
        ({"objective": {"direction": "up"}}, "spec.objective.direction: 'up' is not allowed; allowed values: 'minimize' or 'maximize'"),
        ({"maxTrials": 0}, "spec.maxTrials: Input should be greater than or equal to 1"),
        ({"parallelism": 0}, "spec.parallelism: Input should be greater than or equal to 1"),
        ({"storage": {"type": "rdb"}}, "spec.storage.urlSecretRef: is required when type is rdb"),
        ({"storage": {"type": "postgres"}}, "spec.storage.type: 'postgres' is not allowed; allowed values: 'sqlite' or 'rdb'"),
        ({"template": {"model": {"architecture": "vgg"}}}, "spec.template.model.architecture: 'vgg' is not allowed"),
        ({"samplr": {}}, "spec.samplr: unknown field; allowed fields: template, searchSpace, objective, sampler, pruner, maxTrials"),
    ],
)  # fmt: skip
def test_invalid_specs_name_the_field_and_what_is_allowed(overrides, message):
    with pytest.raises(InvalidSpec) as caught:
        parse_spec("TuningJob", job_document(**overrides))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_valid_spaces_of_every_type():
    spec = job_spec(
        searchSpace={
            LR: {"type": "float", "low": 0.001, "high": 0.1, "step": 0.001},
            "hyperparameters.epochs": {"type": "int", "low": 2, "high": 8, "step": 2},
            "hyperparameters.batchSize": {"type": "int", "low": 16, "high": 128, "step": 16},
            "hyperparameters.optimizer": {"type": "categorical", "choices": ["adamw", "sgd"]},
            "hyperparameters.augmentation.randomCrop": {"type": "categorical", "choices": [True, False]},
        },
        sampler={"type": "grid"},
        maxTrials=5,
    )
    assert spec.search_space["hyperparameters.epochs"].grid() == [2, 4, 6, 8]
    assert spec.search_space["hyperparameters.augmentation.randomCrop"].choices == [True, False]
    assert spec.grid_size() == 100 * 4 * 8 * 2 * 2
    assert spec.max_epochs() == 8
    log_scale = job_spec(
        searchSpace={"hyperparameters.batchSize": {"type": "int", "low": 16, "high": 128, "log": True}}
    )
    assert log_scale.search_space["hyperparameters.batchSize"].log


def test_the_schema_is_structural_and_carries_the_cel_rules():
    schema_module = pytest.importorskip("crucible.api.schema")
    schema = schema_module.structural_schema(TuningJobSpec, bounded=True)
    parameter = schema["properties"]["searchSpace"]["additionalProperties"]
    rules = [rule["message"] for rule in parameter["x-kubernetes-validations"]]
    assert rules == ["float and int parameters need low < high", "a log scale needs low > 0"]
    keys_rule = schema["properties"]["searchSpace"]["x-kubernetes-validations"][0]["rule"]
    assert '"hyperparameters.learningRate"' in keys_rule and '"gates.debug.enabled"' not in keys_rule
    # CEL cannot type schemaless items, so no rule reads choices: the schema refuses an empty list.
    assert parameter["properties"]["choices"]["items"] == {"x-kubernetes-preserve-unknown-fields": True}
    assert parameter["properties"]["choices"]["minItems"] == 1


def test_template_alone_is_a_trainingrun_spec():
    spec = job_spec()
    assert spec.template.to_dict()["hyperparameters"]["epochs"] == FAST_TEMPLATE["hyperparameters"]["epochs"]
