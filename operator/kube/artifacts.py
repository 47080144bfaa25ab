"""Where artifacts live on a cluster: a directory of a volume (`pvc://<claim>/<path>`, mounted into
pods) or a prefix in an S3-compatible store (`s3://<bucket>/<prefix>`, copied by the pods themselves).

Artifacts are only ever written by trainer Jobs and read by servers; the operator never deletes them
(the claim is not owned by any resource it creates) and never talks to the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from crucible.api.manifest import InvalidSpec
from crucible.s3 import S3_FORM, S3_SCHEME, S3Location, parse_s3_uri

PVC_SCHEME = "pvc://"
PVC_FORM = "pvc://<claim>/<path>"
OUTPUT_FORMS = f"{PVC_FORM}, a path relative to the default artifacts volume, or unset"


@dataclass(frozen=True)
class VolumePath:
    """A directory inside a PersistentVolumeClaim."""

    claim: str
    path: str

    @property
    def uri(self) -> str:
        return f"{PVC_SCHEME}{self.claim}/{self.path}"


# Where one artifact is: every run's status.artifact.uri parses to one of these.
ArtifactLocation = VolumePath | S3Location


def _clean_path(path: str, field: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or ".." in parts:
        raise InvalidSpec(field, f"{path!r} must be a path without '..' inside the artifacts store")
    return str(PurePosixPath(*parts))


def parse_pvc_uri(uri: str, field: str) -> VolumePath:
    """`pvc://claim/some/dir` -> VolumePath("claim", "some/dir")."""
    if not uri.startswith(PVC_SCHEME):
        raise InvalidSpec(field, f"{uri!r} is not a {PVC_FORM} URI")
    claim, _, path = uri[len(PVC_SCHEME) :].partition("/")
    if not claim or not path.strip("/"):
        raise InvalidSpec(field, f"{uri!r} needs a claim and a path: {PVC_FORM}")
    return VolumePath(claim, _clean_path(path.strip("/"), field))


def parse_artifact_uri(uri: str, field: str) -> ArtifactLocation:
    """A run's artifact: `pvc://claim/dir` or `s3://bucket/prefix`; InvalidSpec naming `field` otherwise."""
    if uri.startswith(S3_SCHEME):
        return parse_s3_uri(uri, field)
    if uri.startswith(PVC_SCHEME):
        return parse_pvc_uri(uri, field)
    raise InvalidSpec(field, f"{uri!r} is not an artifact location; allowed: {PVC_FORM} or {S3_FORM}")


def output_location(
    uri: str | None,
    default_claim: str,
    namespace: str,
    name: str,
    uid: str,
    s3_base: S3Location | None = None,
) -> ArtifactLocation:
    """Where a TrainingRun writes its artifact.

    Unset: a directory of its own in the default store (the S3 base URI when the operator has one,
    else the default claim), named after the run and its uid, so a run recreated with the same name
    never overwrites the artifact of the one before. A relative path is relative to that store too.
    """
    field = "spec.output.uri"
    default: VolumePath | S3Location = s3_base or VolumePath(default_claim, "")
    if not uri:
        return _below(default, f"{namespace}/{name}/{uid}", field)
    if uri.startswith(PVC_SCHEME):
        return parse_pvc_uri(uri, field)
    if uri.startswith(S3_SCHEME):
        if s3_base is None:
            raise InvalidSpec(
                field,
                f"{uri!r} needs S3 artifact storage, which this operator is not configured with "
                f"(artifacts.s3 in its configuration); allowed: {OUTPUT_FORMS}",
            )
        return parse_s3_uri(uri, field)
    if "://" in uri or uri.startswith("/"):
        allowed = OUTPUT_FORMS if s3_base is None else _s3_forms(s3_base)
        raise InvalidSpec(field, f"{uri!r} cannot be used on a cluster; allowed: {allowed}")
    return _below(default, uri, field)


def _s3_forms(base: S3Location) -> str:
    return f"{PVC_FORM}, {S3_FORM}, a path relative to {base.uri}, or unset"


def _below(base: VolumePath | S3Location, path: str, field: str) -> ArtifactLocation:
    clean = _clean_path(path, field)
    if isinstance(base, S3Location):
        return base.child(clean)
    return VolumePath(base.claim, clean)


def mount_path(root: str, claim: str) -> str:
    """Where a claim is mounted in a pod: one directory per claim under `root`."""
    return f"{root.rstrip('/')}/{claim}"
