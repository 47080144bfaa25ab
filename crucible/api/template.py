"""Paths into a TrainingRun spec used as a template: which fields a search may set, what kind of
value each takes, and a copy of the template with values set. No torch, no Optuna: the spec
validator and the CRD generator use this too."""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from crucible.api.trainingrun import TrainingRunSpec

ValueKind = Literal["int", "float", "bool", "str", "enum"]

# A search may change what a model learns with, never what it is measured on or held to:
# the seed and the data fields below also pick the held-out split, so trials would not compare.
TUNABLE_ROOTS = ("model", "hyperparameters", "dataset.imageSize")
WHY_NOT_TUNABLE = {
    "gates": "gates are the bar every trial must pass; a search must not lower it",
    "seed": "the seed also picks the held-out split, so trials would be measured on different data",
    "dataset": "data curation decides what trials are measured on; only dataset.imageSize can be tuned",
    "resources": "resources say where a trial runs, not what it learns",
    "output": "each trial writes its own output",
}


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def value_kind(annotation: Any) -> ValueKind | None:
    """The kind of scalar a field holds (`int | None` counts as int); None for lists and models."""
    if typing.get_origin(annotation) is Literal:
        return "enum"
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return value_kind(options[0]) if len(options) == 1 else None
    for kind, python_type in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if annotation is python_type:
            return kind  # type: ignore[return-value]
    return None


def leaf_fields(model: type[BaseModel] = TrainingRunSpec, prefix: str = "") -> dict[str, FieldInfo]:
    """Every scalar field of the spec by its camelCase path, e.g. `hyperparameters.learningRate`."""
    fields: dict[str, FieldInfo] = {}
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        if _is_model(field.annotation):
            fields |= leaf_fields(field.annotation, path + ".")
        elif value_kind(field.annotation) is not None:
            fields[path] = field
    return fields


def field_paths(model: type[BaseModel] = TrainingRunSpec, prefix: str = "") -> list[str]:
    """Every field's path, sections and lists included."""
    paths = []
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        paths.append(path)
        if _is_model(field.annotation):
            paths += field_paths(field.annotation, path + ".")
    return paths


@functools.cache
def _template_leaves() -> dict[str, FieldInfo]:
    return leaf_fields()


def _tunable(path: str) -> bool:
    return any(path == root or path.startswith(root + ".") for root in TUNABLE_ROOTS)


def tunable_paths() -> list[str]:
    """Paths a search space may name, in the spec's own field order."""
    return [path for path in _template_leaves() if _tunable(path)]


def path_problem(path: str) -> str | None:
    """Why `path` cannot be tuned, or None when it can."""
    leaves = _template_leaves()
    if path in leaves and _tunable(path):
        return None
    root = path.split(".")[0]
    if path in leaves and root in WHY_NOT_TUNABLE:
        return f"cannot be tuned: {WHY_NOT_TUNABLE[root]}"
    if path in field_paths():
        return f"names a section or a list, not one value; tunable paths: {', '.join(tunable_paths())}"
    return f"not a field of the template; tunable paths: {', '.join(tunable_paths())}"


def kind_of(path: str) -> ValueKind:
    """The kind of value the template field at `path` takes (the path must exist)."""
    kind = value_kind(_template_leaves()[path].annotation)
    assert kind is not None
    return kind


def template_value(template: TrainingRunSpec, path: str) -> Any:
    """The template's own value at `path` (as it would be written in YAML)."""
    value: Any = template.to_dict()
    for key in path.split("."):
        value = value[key]
    return value


def with_values(template: TrainingRunSpec, values: Mapping[str, Any]) -> TrainingRunSpec:
    """A validated copy of the template with each `path -> value` set; raises pydantic's
    ValidationError when a value is not valid for its field."""
    document = template.to_dict()
    for path, value in values.items():
        *parents, leaf = path.split(".")
        node = document
        for key in parents:
            node = node[key]
        node[leaf] = value
    return TrainingRunSpec.model_validate(document)
