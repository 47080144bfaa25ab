"""The TuningJob spec: an Optuna search whose trials are TrainingRuns built from a template.

Shapes stay CRD-friendly (a structural schema): maps of objects, enums, no unions of objects. Rules
that span fields are checked here for `crucible tune` and the operator, and repeated as CEL
`x-kubernetes-validations` so the API server refuses the same bad specs at apply time.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, WithJsonSchema, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from crucible.api.common import SpecModel
from crucible.api.template import kind_of, path_problem, tunable_paths, with_values
from crucible.api.trainingrun import TrainingRunSpec

ParameterType = Literal["float", "int", "categorical"]
SamplerType = Literal["tpe", "random", "cmaes", "grid"]
PrunerType = Literal["median", "hyperband", "none"]
Direction = Literal["minimize", "maximize"]
# What the trainer's result reports (TrainResult.metrics); cvMean only with the cross-validation gate.
ObjectiveMetric = Literal[
    "accuracy", "macroF1", "loss", "cvMean", "trainAccuracy", "trainLoss", "trainSeconds"
]
MINIMIZED_METRICS = ("loss", "trainLoss", "trainSeconds")
# The figures the trainer reports after every epoch; only these can drive a pruner.
PER_EPOCH_METRICS = ("accuracy", "macroF1", "loss", "trainAccuracy", "trainLoss")
MAX_SEARCH_PARAMETERS = 32
MAX_GRID_POINTS = 100_000

# A categorical choice is any scalar (a batch size, an optimizer name, a flag). A structural schema
# cannot say "string or number or boolean", so the CRD keeps choice items schemaless.
Choice = Annotated[str | bool | int | float, WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True})]


def field_error(loc: tuple[str | int, ...], message: str, value: Any = None) -> ValidationError:
    """An error at an exact location below the model being validated (pydantic prefixes the
    outer path), so the message names the field, e.g. `spec.searchSpace.x.low`."""
    error = PydanticCustomError("value_error", "{message}", {"message": message})
    return ValidationError.from_exception_data(
        "TuningJobSpec", [InitErrorDetails(type=error, loc=loc, input=value)]
    )


class ParameterSpec(SpecModel):
    """One dimension of the search: a numeric range or a list of choices."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type == 'categorical' || "
                    "(has(self.low) && has(self.high) && self.low < self.high)",
                    "message": "float and int parameters need low < high",
                },
                {
                    "rule": "self.type == 'categorical' || !has(self.log) || !self.log || "
                    "(has(self.low) && self.low > 0)",
                    "message": "a log scale needs low > 0",
                },
            ]
        }
    )

    type: ParameterType = Field(
        description="float: a real range [low, high]; int: whole numbers in [low, high]; categorical: one "
        "of choices."
    )
    low: float | None = Field(None, description="float and int: the smallest value (inclusive).")
    high: float | None = Field(None, description="float and int: the largest value (inclusive).")
    log: bool = Field(False, description="float and int: sample on a log scale (needs low > 0).")
    step: float | None = Field(
        None, gt=0, description="float and int: sample only low, low + step, ... (int default 1)."
    )
    # CEL cannot read `choices` (its items have no type, see Choice), so no rule can say "categorical
    # needs choices"; the schema refuses an empty list (minItems) and the operator a missing one.
    choices: list[Choice] | None = Field(
        None,
        description="categorical: the values to choose from (strings, numbers or booleans).",
        json_schema_extra={"minItems": 1},
    )

    @model_validator(mode="after")
    def _consistent(self) -> ParameterSpec:
        problem = parameter_problem(self)
        if problem:
            field, message = problem
            raise field_error((field,), message, getattr(self, field))
        return self

    def is_discrete(self) -> bool:
        """Has a finite list of values (what the grid sampler needs)."""
        return self.type in ("categorical", "int") or self.step is not None

    def grid(self) -> list[Any]:
        """Every value a grid search visits, in order."""
        if self.type == "categorical":
            return list(self.choices or [])
        assert self.low is not None and self.high is not None
        step = self.step or 1
        count = math.floor((self.high - self.low) / step + 1e-9) + 1
        values = [self.low + i * step for i in range(count)]
        return [round(v) for v in values] if self.type == "int" else [round(v, 12) for v in values]

    def endpoints(self) -> dict[str, list[Any]]:
        """The extreme values a sampler can produce, by the field that sets them."""
        if self.type == "categorical":
            return {"choices": list(self.choices or [])}
        cast = int if self.type == "int" else float
        return {"low": [cast(self.low)], "high": [cast(self.high)]}


def _is_whole(value: float | None) -> bool:
    return value is None or float(value).is_integer()


def parameter_problem(param: ParameterSpec) -> tuple[str, str] | None:
    """The first inconsistency of one parameter as (field, message), or None."""
    if param.type == "categorical":
        if not param.choices:
            return "choices", "must list at least one value for type categorical"
        for field in ("low", "high", "step"):
            if getattr(param, field) is not None:
                return field, "applies to float and int parameters only; categorical uses choices"
        if param.log:
            return "log", "applies to float and int parameters only; categorical uses choices"
        repeated = [c for i, c in enumerate(param.choices) if c in param.choices[:i]]
        if repeated:
            return "choices", f"must not repeat a value (got {repeated[0]!r} twice)"
        return None
    if param.choices is not None:
        return "choices", "applies to categorical parameters only; float and int use low and high"
    for field in ("low", "high"):
        if getattr(param, field) is None:
            return field, f"is required for type {param.type}"
    assert param.low is not None and param.high is not None
    if param.type == "int":
        for field in ("low", "high", "step"):
            if not _is_whole(getattr(param, field)):
                return field, f"must be a whole number for type int (got {getattr(param, field)})"
    if param.low >= param.high:
        return "low", f"must be less than high (got low {param.low:g}, high {param.high:g})"
    if param.log and param.low <= 0:
        return "low", f"must be > 0 when log is true (got {param.low:g})"
    if param.log and param.step is not None and not (param.type == "int" and param.step == 1):
        return "step", "cannot be combined with log: sample on a log scale or in steps, not both"
    if param.step is not None and param.step > param.high - param.low:
        return "step", f"must not exceed high - low ({param.high - param.low:g})"
    return None


class ObjectiveSpec(SpecModel):
    """What the search optimizes: one metric of each trial's result."""

    metric: ObjectiveMetric = Field(
        "accuracy",
        description="A metric of the trainer's result: accuracy, macroF1 or loss (held-out), cvMean "
        "(needs the cross-validation gate), trainAccuracy, trainLoss or trainSeconds.",
    )
    direction: Direction | None = Field(
        None,
        description="minimize or maximize. Default: minimize for loss, trainLoss and trainSeconds, "
        "maximize otherwise.",
    )

    def resolved_direction(self) -> Direction:
        if self.direction:
            return self.direction
        return "minimize" if self.metric in MINIMIZED_METRICS else "maximize"


class SamplerSpec(SpecModel):
    """How the next trial's values are chosen."""

    type: SamplerType = Field(
        "tpe",
        description="tpe: Tree-structured Parzen Estimator; random; cmaes: CMA-ES (numeric parameters); "
        "grid: every combination (needs choices, or a step for float).",
    )
    seed: int | None = Field(
        None, ge=0, le=2**31 - 1, description="Seed of the sampler, for a repeatable search. Default: random."
    )
    n_startup_trials: int | None = Field(
        None,
        ge=0,
        le=10_000,
        description="tpe and cmaes: trials sampled at random before the model takes over. Default: a "
        "quarter of maxTrials, between 2 and 10.",
    )


class PrunerSpec(SpecModel):
    """Stops unpromising trials early, from the objective reported after every epoch."""

    type: PrunerType = Field(
        "median",
        description="median: stop a trial whose value is worse than the median of earlier trials at the "
        "same epoch; hyperband: successive halving over epochs; none: every trial runs to the end.",
    )
    n_startup_trials: int = Field(
        5, ge=0, le=10_000, description="median: trials that finish before any trial can be pruned."
    )
    n_warmup_steps: int = Field(
        0, ge=0, le=10_000, description="median: epochs every trial runs before it can be pruned."
    )
    min_resource: int = Field(
        1, ge=1, le=10_000, description="hyperband: epochs every trial runs before it can be pruned."
    )
    reduction_factor: int = Field(
        3, ge=2, le=100, description="hyperband: 1 / the fraction of trials promoted at each rung."
    )


class SecretKeyRef(SpecModel):
    """A key of a Secret in the TuningJob's namespace."""

    name: str = Field(description="The Secret's name.")
    key: str = Field("url", description="The key holding the value.")


class StorageSpec(SpecModel):
    """Where the Optuna study lives; trials reach it through the operator's gRPC storage proxy."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type != 'rdb' || has(self.urlSecretRef)",
                    "message": "type rdb needs urlSecretRef",
                }
            ]
        }
    )

    type: Literal["sqlite", "rdb"] = Field(
        "sqlite",
        description="sqlite: a database file on a persistent volume (locally: study.db in the output "
        "directory); rdb: a database URL (PostgreSQL in production) read from a Secret.",
    )
    volume_claim: str | None = Field(
        None,
        description="sqlite on a cluster: the PersistentVolumeClaim holding the study file. Default: the "
        "study volume the Helm chart creates.",
    )
    url_secret_ref: SecretKeyRef | None = Field(
        None,
        description="rdb: the Secret key holding the SQLAlchemy URL, e.g. "
        "postgresql+psycopg2://user:password@host/db (never written in the spec itself).",
    )

    @model_validator(mode="after")
    def _source_matches_type(self) -> StorageSpec:
        if self.type == "rdb" and self.url_secret_ref is None:
            raise field_error(("urlSecretRef",), "is required when type is rdb")
        if self.type == "sqlite" and self.url_secret_ref is not None:
            raise field_error(("urlSecretRef",), "applies to type rdb only")
        if self.type == "rdb" and self.volume_claim is not None:
            raise field_error(("volumeClaim",), "applies to type sqlite only")
        return self


class TuningJobSpec(SpecModel):
    """A TuningJob: search hyperparameters of a TrainingRun template; each trial is a TrainingRun."""

    template: TrainingRunSpec = Field(
        description="The TrainingRun spec every trial starts from; its gates apply to every trial."
    )
    search_space: dict[str, ParameterSpec] = Field(
        min_length=1,
        max_length=MAX_SEARCH_PARAMETERS,
        description="Template field path (e.g. hyperparameters.learningRate) -> the values to search.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(path, path in " + repr(tunable_paths()).replace("'", '"') + ")",
                    "message": "searchSpace keys must be paths of tunable template fields, such as "
                    "hyperparameters.learningRate",
                }
            ]
        },
    )
    objective: ObjectiveSpec = Field(
        default_factory=ObjectiveSpec, description="The metric every trial is scored by, and its direction."
    )
    sampler: SamplerSpec = Field(
        default_factory=SamplerSpec, description="How the next trial's values are chosen."
    )
    pruner: PrunerSpec = Field(default_factory=PrunerSpec, description="When a trial is stopped early.")
    max_trials: int = Field(20, ge=1, le=10_000, description="The search ends after this many trials.")
    parallelism: int = Field(1, ge=1, le=64, description="At most this many trials run at once.")
    max_failed_trials: int | None = Field(
        None,
        ge=0,
        le=10_000,
        description="The search stops (Failed) when more trials than this have failed. Default: no limit.",
    )
    timeout_seconds: int | None = Field(
        None,
        ge=1,
        description="No trial starts after the search has run this long; running trials finish. Default: "
        "no limit.",
    )
    baseline_trial: bool = Field(
        True,
        description="Run the template's own values first (trial 0, when they lie in the search space), "
        "so the search is measured against them. Grid searches visit every point anyway.",
    )
    storage: StorageSpec = Field(
        default_factory=StorageSpec, description="Where the study lives, so a restarted search resumes it."
    )

    @model_validator(mode="after")
    def _fits_the_template(self) -> TuningJobSpec:
        for path, param in self.search_space.items():
            _check_parameter(self.template, path, param)
        if self.objective.metric == "cvMean" and not self.template.gates.cross_validation.enabled:
            raise field_error(
                ("objective", "metric"), "cvMean needs template.gates.crossValidation.enabled", "cvMean"
            )
        if self.sampler.type == "grid":
            self._check_grid()
        if self.pruner.type == "hyperband" and self.pruner.min_resource >= self.max_epochs():
            raise field_error(
                ("pruner", "minResource"),
                f"must be less than the most epochs a trial trains ({self.max_epochs()})",
                self.pruner.min_resource,
            )
        return self

    def _check_grid(self) -> None:
        for path, param in self.search_space.items():
            if not param.is_discrete():
                raise field_error(
                    ("searchSpace", path, "step"), "the grid sampler needs a step for type float (or choices)"
                )
        if self.grid_size() > MAX_GRID_POINTS:
            raise field_error(
                ("sampler", "type"),
                f"the grid has {self.grid_size()} points; at most {MAX_GRID_POINTS}",
                "grid",
            )

    def grid_size(self) -> int:
        """How many points the search space has (finite for grid searches)."""
        return math.prod(len(param.grid()) for param in self.search_space.values() if param.is_discrete())

    def max_epochs(self) -> int:
        """The most epochs any trial trains: the template's, unless epochs is searched."""
        param = self.search_space.get("hyperparameters.epochs")
        if param is None:
            return self.template.hyperparameters.epochs
        return int(max(value for values in param.endpoints().values() for value in values))


def _check_parameter(template: TrainingRunSpec, path: str, param: ParameterSpec) -> None:
    """The path names a tunable template field, the parameter's type fits it, and every value the
    sampler can produce is valid for the field."""
    problem = path_problem(path)
    if problem:
        raise field_error(("searchSpace", path), problem, path)
    kind = kind_of(path)
    if param.type != "categorical" and kind not in ("int", "float"):
        raise field_error(
            ("searchSpace", path, "type"), f"the field takes {kind} values: use type categorical", param.type
        )
    if param.type == "float" and kind == "int":
        raise field_error(
            ("searchSpace", path, "type"),
            "the field takes whole numbers: use type int or categorical",
            "float",
        )
    for field, values in param.endpoints().items():
        for value in values:
            try:
                with_values(template, {path: value})
            except ValidationError as error:
                reason = error.errors()[0]["msg"]
                raise field_error(
                    ("searchSpace", path, field), f"{value!r} is not valid for {path}: {reason}", value
                ) from None
