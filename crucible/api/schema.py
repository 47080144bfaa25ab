"""Pydantic models -> structural OpenAPI v3 schemas, the form a CustomResourceDefinition accepts.

The API server wants every node typed, no references, no unions, OpenAPI 3.0 bounds (boolean
exclusiveMinimum) and `x-kubernetes-preserve-unknown-fields` where a map is open. Optional fields
(`X | None`) are typed as X: in a spec a null is pruned by the API server exactly like an absent
field; in a status (`nullable=True`) null is a real value, so the node is marked nullable.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# Bounds given to unbounded spec strings and lists, so the API server can bound the cost of CEL rules
# that read them (it refuses rules whose estimated cost is too high).
DEFAULT_MAX_LENGTH = 4096
DEFAULT_MAX_ITEMS = 1000

_DROPPED = {"title", "$defs"}
# Keys first in this order, the rest sorted, so the YAML reads well and diffs stay small.
_KEY_ORDER = ("type", "description", "nullable", "default", "enum", "required", "properties")


class SchemaError(ValueError):
    """A model uses a construct that a structural schema cannot express."""


def structural_schema(model: type[BaseModel], *, nullable: bool = False, bounded: bool = False) -> dict:
    """The OpenAPI v3 schema of `model` (camelCase field names), with descriptions kept."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    converter = _Converter(raw.get("$defs", {}), nullable=nullable, bounded=bounded)
    return converter.convert(raw, path=model.__name__)


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    first = [key for key in _KEY_ORDER if key in node]
    rest = sorted(key for key in node if key not in _KEY_ORDER)
    return {key: node[key] for key in [*first, *rest]}


class _Converter:
    def __init__(self, definitions: dict[str, dict], *, nullable: bool, bounded: bool) -> None:
        self.definitions = definitions
        self.nullable = nullable
        self.bounded = bounded

    def convert(self, node: dict[str, Any], path: str) -> dict:
        node = self._resolve(node)
        node = self._collapse_optional(node, path)
        out = {key: value for key, value in node.items() if key not in _DROPPED}
        if "const" in out:
            out["enum"] = [out.pop("const")]
        if out.get("default", 0) is None:
            del out["default"]
        self._openapi_bounds(out)
        if out.get("type") == "object":
            self._convert_object(out, path)
        if out.get("type") == "array" and "items" in out:
            out["items"] = self.convert(out["items"], f"{path}[]")
            if self.bounded:
                out.setdefault("maxItems", DEFAULT_MAX_ITEMS)
        if self.bounded and out.get("type") == "string" and "enum" not in out:
            out.setdefault("maxLength", DEFAULT_MAX_LENGTH)
        if "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            raise SchemaError(f"{path}: no type (unions other than Optional are not structural)")
        return _ordered(out)

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """Inline a $ref (or a one-element allOf); the field's own keys (its description) win."""
        reference = node.get("$ref")
        if reference is None and len(node.get("allOf", [])) == 1:
            reference = node["allOf"][0].get("$ref")
        if reference is None:
            return node
        target = self.definitions[reference.rsplit("/", 1)[-1]]
        own = {key: value for key, value in node.items() if key not in ("$ref", "allOf")}
        return {**self._resolve(target), **own}

    def _collapse_optional(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        variants = node.get("anyOf")
        if variants is None:
            return node
        typed = [variant for variant in variants if variant != {"type": "null"}]
        if len(typed) != 1:
            raise SchemaError(f"{path}: unions other than Optional are not structural")
        merged = {**self._resolve(typed[0]), **{k: v for k, v in node.items() if k != "anyOf"}}
        if self.nullable and len(typed) < len(variants):
            merged["nullable"] = True
        return merged

    @staticmethod
    def _openapi_bounds(out: dict[str, Any]) -> None:
        """JSON Schema 2020 numeric exclusive bounds -> OpenAPI 3.0 boolean flags."""
        for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            bound = out.get(exclusive)
            if isinstance(bound, bool) or bound is None:
                continue
            out[inclusive] = bound
            out[exclusive] = True

    def _convert_object(self, out: dict[str, Any], path: str) -> None:
        extra = out.pop("additionalProperties", None)
        if "properties" in out:
            out["properties"] = {
                name: self._described(self.convert(child, f"{path}.{name}"), f"{path}.{name}")
                for name, child in out["properties"].items()
            }
            if extra is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
        elif isinstance(extra, dict):
            out["additionalProperties"] = self.convert(extra, f"{path}.*")
        elif extra is not False:
            out["x-kubernetes-preserve-unknown-fields"] = True

    @staticmethod
    def _described(node: dict, path: str) -> dict:
        if not node.get("description"):
            raise SchemaError(
                f"{path}: no description (kubectl explain shows it; add Field(description=...))"
            )
        return node
