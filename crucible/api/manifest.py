"""Reading resource documents (YAML) into typed specs, with errors a person can act on."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from crucible import API_GROUP, API_VERSION

API_VERSION_STRING = f"{API_GROUP}/{API_VERSION}"


class InvalidSpec(ValueError):
    """A resource document that cannot be used; the message names the field and what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


@dataclass(frozen=True)
class Resource:
    kind: str
    name: str
    namespace: str | None
    spec: BaseModel


def spec_models() -> dict[str, type[BaseModel]]:
    # Imported lazily so each kind's module stays independent.
    from crucible.api.trainingrun import TrainingRunSpec

    models: dict[str, type[BaseModel]] = {"TrainingRun": TrainingRunSpec}
    try:
        from crucible.api.tuningjob import TuningJobSpec

        models["TuningJob"] = TuningJobSpec
    except ImportError:
        pass
    try:
        from crucible.api.modeldeployment import ModelDeploymentSpec

        models["ModelDeployment"] = ModelDeploymentSpec
    except ImportError:
        pass
    return models


def _submodel(model: type[BaseModel] | None, key: str | int) -> type[BaseModel] | None:
    """The model class found at one step of an error location, if any."""
    if model is None or isinstance(key, int):
        return model
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            for candidate in (field.annotation, *typing.get_args(field.annotation)):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    return candidate
                for inner in typing.get_args(candidate):
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        return inner
            return None
    return None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _dotted(root: str, loc: list) -> str:
    """`spec.dataset.sources[1].uri`: list positions in brackets, as kubectl and the docs write them."""
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def describe_validation_error(error: ValidationError, model: type[BaseModel], root: str = "spec") -> str:
    """One line per problem: `spec.model.architecture: ... ; allowed: ...`."""
    lines = []
    for item in error.errors():
        loc = [part for part in item["loc"] if part not in ("function-after",)]
        owner: type[BaseModel] | None = model
        for part in loc[:-1]:
            owner = _submodel(owner, part)
        path = _dotted(root, loc)
        kind = item["type"]
        if kind == "extra_forbidden":
            allowed = ", ".join(_field_names(owner)) if owner else "see the CRD"
            message = f"unknown field; allowed fields: {allowed}"
        elif kind == "literal_error":
            expected = item.get("ctx", {}).get("expected", "")
            message = f"{item['input']!r} is not allowed; allowed values: {expected}"
        elif kind == "value_error":
            message = str(item.get("ctx", {}).get("error", item["msg"]))
        else:
            message = f"{item['msg']} (got {item['input']!r})"
        lines.append(f"{path}: {message}")
    return "\n".join(lines)


def parse_spec(kind: str, spec: Any) -> BaseModel:
    """Validate a spec mapping for `kind`; raises InvalidSpec naming the field."""
    models = spec_models()
    if kind not in models:
        raise InvalidSpec("kind", f"{kind!r} is not allowed; allowed values: {', '.join(models)}")
    model = models[kind]
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise InvalidSpec("spec", "must be a mapping")
    try:
        return model.model_validate(spec)
    except ValidationError as error:
        text = describe_validation_error(error, model)
        field, _, detail = text.partition(": ")
        raise InvalidSpec(field, detail) from None


def parse_document(document: Any, expected_kind: str | None = None) -> Resource:
    """A whole resource (apiVersion, kind, metadata, spec) into a typed Resource."""
    if not isinstance(document, dict):
        raise InvalidSpec("document", "must be a mapping with apiVersion, kind, metadata and spec")
    api_version = document.get("apiVersion")
    if api_version != API_VERSION_STRING:
        raise InvalidSpec(
            "apiVersion", f"{api_version!r} is not allowed; allowed values: {API_VERSION_STRING}"
        )
    kind = document.get("kind")
    if expected_kind and kind != expected_kind:
        raise InvalidSpec("kind", f"{kind!r} is not allowed here; allowed values: {expected_kind}")
    unknown = sorted(set(document) - {"apiVersion", "kind", "metadata", "spec", "status"})
    if unknown:
        raise InvalidSpec(unknown[0], "unknown field; allowed fields: apiVersion, kind, metadata, spec")
    metadata = document.get("metadata") or {}
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not name or not isinstance(name, str):
        raise InvalidSpec("metadata.name", "is required")
    spec = parse_spec(str(kind), document.get("spec"))
    return Resource(kind=str(kind), name=name, namespace=metadata.get("namespace"), spec=spec)


def load_file(path: str | Path, expected_kind: str | None = None) -> Resource:
    """Read one resource from a YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InvalidSpec("-f", f"no such file: {path}") from None
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise InvalidSpec(str(path), f"invalid YAML{where}: {problem}") from None
    if len(documents) != 1:
        raise InvalidSpec(str(path), f"expected one resource document, found {len(documents)}")
    return parse_document(documents[0], expected_kind)
