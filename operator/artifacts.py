"""Where artifacts live on a cluster: `pvc://<claim>/<path>` URIs and how pods mount them.

Artifacts are only ever written by trainer Jobs and read by servers; the operator never deletes them
(the claim is not owned by any resource it creates).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from crucible.api.manifest import InvalidSpec

PVC_SCHEME = "pvc://"
OUTPUT_FORMS = "pvc://<claim>/<path>, a path relative to the default artifacts volume, or unset"


@dataclass(frozen=True)
class VolumePath:
    """A directory inside a PersistentVolumeClaim."""

    claim: str
    path: str

    @property
    def uri(self) -> str:
        return f"{PVC_SCHEME}{self.claim}/{self.path}"


def _clean_path(path: str, field: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or ".." in parts:
        raise InvalidSpec(field, f"{path!r} must be a path without '..' inside the volume")
    return str(PurePosixPath(*parts))


def parse_pvc_uri(uri: str, field: str) -> VolumePath:
    """`pvc://claim/some/dir` -> VolumePath("claim", "some/dir")."""
    if not uri.startswith(PVC_SCHEME):
        raise InvalidSpec(field, f"{uri!r} is not a pvc://<claim>/<path> URI")
    claim, _, path = uri[len(PVC_SCHEME) :].partition("/")
    if not claim or not path.strip("/"):
        raise InvalidSpec(field, f"{uri!r} needs a claim and a path: pvc://<claim>/<path>")
    return VolumePath(claim, _clean_path(path.strip("/"), field))


def output_location(uri: str | None, default_claim: str, namespace: str, name: str, uid: str) -> VolumePath:
    """Where a TrainingRun writes its artifact.

    Unset: a directory of its own in the default claim, named after the run and its uid, so a run
    recreated with the same name never overwrites the artifact of the one before.
    """
    field = "spec.output.uri"
    if not uri:
        return VolumePath(default_claim, f"{namespace}/{name}/{uid}")
    if uri.startswith(PVC_SCHEME):
        return parse_pvc_uri(uri, field)
    if "://" in uri or uri.startswith("/"):
        raise InvalidSpec(field, f"{uri!r} cannot be used on a cluster; allowed: {OUTPUT_FORMS}")
    return VolumePath(default_claim, _clean_path(uri, field))


def mount_path(root: str, claim: str) -> str:
    """Where a claim is mounted in a pod: one directory per claim under `root`."""
    return f"{root.rstrip('/')}/{claim}"
