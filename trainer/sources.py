"""Datasets that grow: `spec.dataset.sources`, image folders whose images join the training side only.

The primary dataset (digits, fake or an imageFolder) alone is curated and split, so its held-out split
stays the same across retrains however much data the sources gain; every source image then joins the
training side (the cross-validation folds, the validation split and the final fit), labelled by the
primary's class list. A source image whose pixels equal a held-out image's (a client sending held-out
pictures back as feedback) is dropped from training and counted, so the held-out split stays unseen.

A source folder that is missing or holds no images is a warning in the result, not a failure: a
capture destination has no labelled/ view until the first label arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from crucible.api.trainingrun import DatasetSpec, SourceSpec
from crucible.s3 import is_s3_uri
from crucible.trainer.data import (
    CombinedSource,
    DatasetError,
    ImageData,
    check_source,
    checked_folder,
    class_files,
    class_folders,
    folder_path,
)
from crucible.trainer.remote import check_remote, default_cache_dir, sync

# Names of skipped class folders kept per source in the model card.
IGNORED_SHOWN = 10


def field_of(index: int) -> str:
    return f"spec.dataset.sources[{index}].uri"


@dataclass
class LoadedSource:
    """One source as read: its images (None when it has none) and what was skipped."""

    spec: SourceSpec
    data: ImageData | None
    ignored_folders: list[str] = field(default_factory=list)
    warning: str | None = None
    # Set once the training side is assembled: images kept, and images dropped as held-out copies.
    images: int = 0
    held_out_copies: int = 0
    fingerprint: str | None = None

    @property
    def name(self) -> str:
        return self.spec.label

    def card_entry(self) -> dict:
        """The model card's record of this source."""
        entry: dict = {
            "name": self.name,
            "uri": self.spec.uri,
            "images": self.images,
            "fingerprint": self.fingerprint,
            "heldOutCopies": self.held_out_copies,
            "badFiles": self.data.report.bad_files if self.data is not None else 0,
        }
        if self.ignored_folders:
            entry["ignoredFolders"] = self.ignored_folders[:IGNORED_SHOWN]
        if self.warning:
            entry["warning"] = self.warning
        return entry

    def result_entry(self) -> dict:
        """The result's compact record: the count, and only what else there is to say."""
        entry: dict = {"images": self.images}
        if self.held_out_copies:
            entry["heldOutCopies"] = self.held_out_copies
        if self.ignored_folders:
            entry["ignoredFolders"] = len(self.ignored_folders)
        if self.data is not None and self.data.report.bad_files:
            entry["badFiles"] = self.data.report.bad_files
        if self.warning:
            entry["warning"] = self.warning
        return entry


def check_sources(spec: DatasetSpec) -> None:
    """Fail fast on what no retry can fix: a malformed s3:// URI or missing credentials, a scheme this
    machine cannot read (pvc:// exists only in a pod, where the operator mounts the claim)."""
    check_source(spec)
    for index, source in enumerate(spec.sources):
        if is_s3_uri(source.uri):
            check_remote(source.uri, field_of(index))
        else:
            folder_path(source.uri, field_of(index))


def _local_root(source: SourceSpec, index: int, cache_dir: Path | None) -> Path:
    if is_s3_uri(source.uri):
        check_remote(source.uri, field_of(index))
        return sync(source.uri, cache_dir or default_cache_dir(), field_of(index)).directory
    return folder_path(source.uri, field_of(index))


def load_source(
    source: SourceSpec,
    index: int,
    classes: list[str],
    max_bad_files: int,
    workers: int,
    cache_dir: Path | None,
) -> LoadedSource:
    """The images of one source under the class folders named in `classes`, labelled in that order."""
    root = _local_root(source, index, cache_dir)
    if not root.is_dir():
        return LoadedSource(source, None, warning=f"{source.uri!r} is not a directory: no images")
    ignored = [name for name in class_folders(root) if name not in classes]
    paths, labels = class_files(root, classes)
    if not paths:
        return LoadedSource(
            source, None, ignored, f"{source.uri!r} holds no images in folders of the class list"
        )
    try:
        data = checked_folder(root, paths, labels, classes, max_bad_files, workers, source.uri)
    except DatasetError as error:
        raise DatasetError(f"{field_of(index)}: {error}") from None
    return LoadedSource(source, data, ignored)


def load_sources(
    spec: DatasetSpec, classes: list[str], workers: int = 0, cache_dir: Path | None = None
) -> list[LoadedSource]:
    """Every source of the spec, in order (maxBadFiles applies to each source on its own)."""
    return [
        load_source(source, index, classes, spec.max_bad_files, workers, cache_dir)
        for index, source in enumerate(spec.sources)
    ]


@dataclass
class TrainingSide:
    """The primary's training split followed by every source's images, and where each came from."""

    data: ImageData
    origin: np.ndarray  # int64 [N]: 0 for the primary, k for the k-th source that has images

    def subset(self, keep: np.ndarray) -> TrainingSide:
        return TrainingSide(self.data.subset(keep), self.origin[keep])


def training_side(primary_train: ImageData, sources: list[LoadedSource]) -> TrainingSide:
    """One ImageData over the primary's training items and the sources' images (in spec order)."""
    with_images = [source for source in sources if source.data is not None]
    parts = [primary_train, *(source.data for source in with_images)]
    if len(parts) == 1:
        return TrainingSide(primary_train, np.zeros(len(primary_train), dtype=np.int64))
    sizes = [int(part.items.max()) + 1 if len(part) else 0 for part in parts]
    prefixes = ["", *(f"{source.name}:" for source in with_images)]
    combined = CombinedSource([part.source for part in parts], sizes, prefixes)
    starts = combined.starts
    items = np.concatenate([part.items + starts[k] for k, part in enumerate(parts)])
    labels = torch.cat([part.labels for part in parts])
    origin = np.concatenate([np.full(len(part), k, dtype=np.int64) for k, part in enumerate(parts)])
    data = ImageData(combined, items, labels, primary_train.classes, primary_train.report)
    return TrainingSide(data, origin)


def held_out_copies(side: TrainingSide, side_digests: np.ndarray, held_out_digests: np.ndarray) -> np.ndarray:
    """Positions of source images (never the primary's own) whose pixel digest a held-out image has."""
    is_copy = np.isin(side_digests, held_out_digests) & (side.origin > 0)
    return np.flatnonzero(is_copy)


def record_counts(side: TrainingSide, sources: list[LoadedSource], dropped: np.ndarray) -> None:
    """Each source's kept and dropped image counts and the fingerprint of what it contributed."""
    with_images = [source for source in sources if source.data is not None]
    dropped_origin = side.origin[dropped]
    kept = np.ones(len(side.origin), dtype=bool)
    kept[dropped] = False
    for k, source in enumerate(with_images, start=1):
        mine = np.flatnonzero((side.origin == k) & kept)
        source.images = len(mine)
        source.held_out_copies = int((dropped_origin == k).sum())
        source.fingerprint = side.data.subset(mine).fingerprint()
