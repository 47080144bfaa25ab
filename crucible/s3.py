"""`s3://<bucket>/<prefix>` URIs: where an artifact lives in an S3-compatible store (pure, no boto3).

The operator only writes these into manifests, so it parses them without any S3 client; the trainer
and the server move the files (crucible/s3_transfer.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from crucible.api.manifest import InvalidSpec

S3_SCHEME = "s3://"
S3_FORM = "s3://<bucket>/<prefix>"
# S3's own rule for bucket names (AWS, MinIO and Ceph agree on it).
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Location:
    """A "directory" in a bucket: every object of the artifact has the key `<prefix>/<file name>`."""

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, file_name: str) -> str:
        return f"{self.prefix}/{file_name}" if self.prefix else file_name

    def child(self, path: str) -> S3Location:
        """`path` below this location (the operator's default location of a run)."""
        return S3Location(self.bucket, self.key(path))


def is_s3_uri(uri: str | None) -> bool:
    return bool(uri) and uri.startswith(S3_SCHEME)  # type: ignore[union-attr]


def parse_s3_uri(uri: str, field: str, need_prefix: bool = True) -> S3Location:
    """`s3://bucket/some/prefix` -> S3Location("bucket", "some/prefix"); InvalidSpec naming `field`.

    An artifact needs a prefix of its own; a base URI (the operator's artifacts.s3.uri) may be a whole
    bucket."""
    if not is_s3_uri(uri):
        raise InvalidSpec(field, f"{uri!r} is not an {S3_FORM} URI")
    bucket, _, path = uri[len(S3_SCHEME) :].partition("/")
    if not BUCKET_NAME.match(bucket) or ".." in bucket:
        raise InvalidSpec(
            field, f"{bucket!r} in {uri!r} is not a bucket name (3 to 63 of a-z, 0-9, '.' and '-')"
        )
    parts = [part for part in PurePosixPath(path).parts if part != "/"]
    if ".." in parts:
        raise InvalidSpec(field, f"{uri!r} must not contain '..'")
    if need_prefix and not parts:
        raise InvalidSpec(field, f"{uri!r} needs a bucket and a prefix: {S3_FORM}")
    return S3Location(bucket, "/".join(parts))
