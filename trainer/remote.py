"""Datasets in an S3-compatible store (`spec.dataset.uri: s3://<bucket>/<prefix>`): copied once into a
local cache, then read like any image folder.

The cache keeps, beside the files, the ETag and size of every object it copied. A later run lists
the prefix and downloads only objects that are new or changed (ETag or size differ); files already
complete are reused, so a run stopped mid-download continues where it was. Objects gone from the
store are removed from the cache, but only files the cache itself downloaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from crucible.api.manifest import InvalidSpec
from crucible.s3 import parse_s3_uri

MANIFEST = ".crucible-objects.json"
# Written every this many downloads, so an interrupted copy keeps most of what it fetched.
MANIFEST_EVERY = 200


def default_cache_dir() -> Path:
    """CRUCIBLE_DATA_CACHE, else ~/.cache/crucible/datasets (in a pod: a volume mounted there)."""
    configured = os.environ.get("CRUCIBLE_DATA_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "crucible" / "datasets"


@dataclass
class Synced:
    directory: Path
    downloaded: int
    reused: int
    removed: int


def check_remote(uri: str, field: str = "spec.dataset.uri") -> None:
    """Fail fast on a malformed s3:// URI or missing credentials, before any work starts."""
    from crucible.s3_transfer import require_credentials
    from crucible.trainer.data import DatasetError

    try:
        parse_s3_uri(uri, field)
    except InvalidSpec as error:
        raise DatasetError(str(error)) from None
    require_credentials()


def sync(uri: str, cache_dir: Path, field: str = "spec.dataset.uri") -> Synced:
    """The objects under `uri`, complete in `cache_dir/<bucket>/<prefix>`."""
    from crucible.s3_transfer import S3Directory

    location = parse_s3_uri(uri, field)
    local = cache_dir / location.bucket / location.prefix
    local.mkdir(parents=True, exist_ok=True)
    manifest_path = local / MANIFEST
    known: dict[str, list] = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    store = S3Directory(location)
    objects = store.objects()
    downloaded = reused = removed = 0
    for name, (etag, size) in sorted(objects.items()):
        path = local / name
        if name == MANIFEST or ".." in Path(name).parts:
            continue
        if known.get(name) == [etag, size] and path.is_file() and path.stat().st_size == size:
            reused += 1
            continue
        store.download(name, path)
        known[name] = [etag, size]
        downloaded += 1
        if downloaded % MANIFEST_EVERY == 0:
            _write_manifest(manifest_path, known)
    for name in [name for name in known if name not in objects]:
        (local / name).unlink(missing_ok=True)
        del known[name]
        removed += 1
    _write_manifest(manifest_path, known)
    return Synced(local, downloaded, reused, removed)


def _write_manifest(path: Path, known: dict[str, list]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(known, sort_keys=True))
    os.replace(partial, path)
