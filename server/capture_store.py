"""Where captured requests and their labels are kept: a local directory (a mounted pvc:// claim in a
pod) or an `s3://bucket/prefix`. One destination is one prefix; names below it are relative paths
such as `requests/<id>.json` (the layout is in docs/feedback.md).

Nothing here imports torch or FastAPI: `crucible label` uses these stores too. Every failure is a
CaptureStoreError of one line; the server counts them and never turns them into request errors.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from crucible.api.manifest import InvalidSpec
from crucible.s3 import is_s3_uri, parse_s3_uri


class CaptureStoreError(Exception):
    """A read, write, listing or removal failed; the message is one line."""


@dataclass(frozen=True)
class StoredFile:
    name: str  # relative to the folder listed
    modified: datetime


class CaptureStore:
    """The operations capture and labelling need; `uri` names the destination in messages."""

    uri: str

    def write(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or None when there is no such file."""
        raise NotImplementedError

    def delete(self, name: str) -> None:
        """Remove the file if it is there."""
        raise NotImplementedError

    def listing(self, folder: str) -> Iterator[StoredFile]:
        """Every file below `folder` (recursively), named relative to it."""
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        return self.read(name) is not None


class LocalStore(CaptureStore):
    """A directory; each file is written to a temporary name and renamed, so a reader (another
    replica, `crucible label`, a TrainingRun) never sees half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = str(root)

    def _path(self, name: str) -> Path:
        return self.root / name

    def write(self, name: str, data: bytes) -> None:
        path = self._path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Hidden while it is written; the name is this process's and thread's own.
            temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
            try:
                temporary.write_bytes(data)
                os.replace(temporary, path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        except OSError as error:
            raise CaptureStoreError(f"cannot write {path}: {error.strerror or error}") from None

    def read(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise CaptureStoreError(f"cannot read {self._path(name)}: {error.strerror or error}") from None

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink(missing_ok=True)
        except OSError as error:
            raise CaptureStoreError(f"cannot remove {self._path(name)}: {error.strerror or error}") from None

    def listing(self, folder: str) -> Iterator[StoredFile]:
        top = self._path(folder)
        try:
            for directory, _, files in os.walk(top):
                for file in files:
                    if file.startswith("."):  # a write in progress
                        continue
                    path = Path(directory) / file
                    try:
                        modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                    except FileNotFoundError:  # removed meanwhile (a relabel)
                        continue
                    yield StoredFile(path.relative_to(top).as_posix(), modified)
        except OSError as error:
            raise CaptureStoreError(f"cannot list {top}: {error.strerror or error}") from None


class S3Store(CaptureStore):
    """An s3:// prefix, with the same credentials, endpoint and region as artifacts (the AWS_*
    variables). A failed call is retried twice at most: capture must not queue up behind a store
    that is down."""

    def __init__(self, uri: str) -> None:
        import boto3
        from botocore.config import Config

        try:
            self.location = parse_s3_uri(uri, "--capture")
        except InvalidSpec as error:
            raise CaptureStoreError(str(error)) from None
        self.uri = self.location.uri
        config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=20)
        try:
            self._client = boto3.client("s3", config=config)
        except Exception as error:  # a malformed AWS_ENDPOINT_URL or region
            raise CaptureStoreError(f"cannot use {self.uri}: {error}") from None

    def _fail(self, what: str, name: str, error: Exception) -> CaptureStoreError:
        from crucible.s3_transfer import _explain

        return CaptureStoreError(str(_explain(error, f"cannot {what} {self.uri}/{name}")))

    def write(self, name: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.location.bucket, Key=self.location.key(name), Body=data)
        except Exception as error:
            raise self._fail("write", name, error) from None

    def read(self, name: str) -> bytes | None:
        try:
            answer = self._client.get_object(Bucket=self.location.bucket, Key=self.location.key(name))
            return answer["Body"].read()
        except Exception as error:
            code = str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._fail("read", name, error) from None

    def delete(self, name: str) -> None:
        try:
            self._client.delete_object(Bucket=self.location.bucket, Key=self.location.key(name))
        except Exception as error:
            raise self._fail("remove", name, error) from None

    def listing(self, folder: str) -> Iterator[StoredFile]:
        prefix = self.location.key(folder.rstrip("/")) + "/"
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield StoredFile(item["Key"][len(prefix) :], item["LastModified"])
        except Exception as error:
            raise self._fail("list", folder, error) from None


def open_store(destination: str) -> CaptureStore:
    """The store a `--capture` destination names: s3://bucket/prefix, or a local directory."""
    if is_s3_uri(destination):
        return S3Store(destination)
    if destination.startswith("file://"):
        destination = destination[len("file://") :]
    if "://" in destination:
        raise CaptureStoreError(
            f"--capture: {destination!r} is neither a directory nor an s3://<bucket>/<prefix> URI "
            "(a pvc:// claim is mounted by the operator and passed as a directory)"
        )
    return LocalStore(Path(destination))
