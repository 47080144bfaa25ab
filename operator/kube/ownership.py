"""Who owns what: the uid and controller of an object, and whether a status patch changes anything.

Children are found by their controller's uid, not its name: a resource deleted and recreated under the
same name must not adopt the first one's children.
"""

from __future__ import annotations

from crucible.operator.kube.naming import API_VERSION_STRING


def uid(body: dict) -> str | None:
    return body.get("metadata", {}).get("uid")


def controller_uid(body: dict) -> str | None:
    """The uid of whatever controls this object (any kind), if anything does."""
    references = body.get("metadata", {}).get("ownerReferences") or []
    return next((ref.get("uid") for ref in references if ref.get("controller")), None)


def controller_of(body: dict, kind: str) -> str | None:
    """Name of the owner of `kind` that controls this object (our resources only), if any."""
    for reference in body.get("metadata", {}).get("ownerReferences") or []:
        if (
            reference.get("controller")
            and reference.get("kind") == kind
            and reference.get("apiVersion") == API_VERSION_STRING
        ):
            return reference.get("name")
    return None


def merge_patched(base: object, patch: object) -> object:
    """`base` with the JSON merge patch `patch` applied (RFC 7386: null removes, mappings merge)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patched(result.get(key), value)
    return result


def unchanged(previous: dict, patch: dict) -> bool:
    """True when writing `patch` over `previous` would change nothing (so no write, no event)."""
    return merge_patched(previous, patch) == previous
