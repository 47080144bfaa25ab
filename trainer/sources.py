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

from crucible.api.trainingrun import DatasetSpec, SourceSpec, TrainingRunSpec
from crucible.resources import available_cpus
from crucible.s3 import is_s3_uri
from crucible.trainer.data import (
    CombinedSource,
    ImageData,
    check_source,
    checked_folder,
    class_files,
    class_folders,
    folder_path,
)
from crucible.trainer.pipeline import Pipeline
from crucible.trainer.progress import Reporter
from crucible.trainer.remote import check_remote, default_cache_dir, sync
from crucible.trainer.survey import Survey, survey

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
    bad_files: int = 0  # unreadable files skipped
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
            "badFiles": self.bad_files,
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
        if self.bad_files:
            entry["badFiles"] = self.bad_files
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
    source: SourceSpec, index: int, classes: list[str], workers: int, cache_dir: Path | None
) -> LoadedSource:
    """The images of one source under the class folders named in `classes`, labelled in that order.
    Unreadable files are skipped and counted, whatever maxBadFiles says: a source such as a capture
    view is written to while runs read it, and one half-written picture must not stop a retrain."""
    root = _local_root(source, index, cache_dir)
    if not root.is_dir():
        return LoadedSource(source, None, warning=f"{source.uri!r} is not a directory: no images")
    ignored = [name for name in class_folders(root) if name not in classes]
    paths, labels = class_files(root, classes)
    data = checked_folder(root, paths, labels, classes, len(paths), workers, source.uri)
    bad = data.report.bad_files
    if not len(data):
        warning = f"{source.uri!r} holds no readable images in folders of the class list"
        if (root / "labelled").is_dir():
            warning += f" (a capture destination? its image-folder view is {source.uri.rstrip('/')}/labelled)"
        return LoadedSource(source, None, ignored, warning, bad)
    return LoadedSource(source, data, ignored, bad_files=bad)


def load_sources(
    spec: DatasetSpec, classes: list[str], workers: int = 0, cache_dir: Path | None = None
) -> list[LoadedSource]:
    """Every source of the spec, in order."""
    return [
        load_source(source, index, classes, workers, cache_dir) for index, source in enumerate(spec.sources)
    ]


@dataclass
class TrainingSide:
    """The primary's training split followed by every source's images, and where each came from."""

    data: ImageData
    origin: np.ndarray  # int64 [N]: 0 for the primary, k for the k-th source that has images


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


def _logged(sources: list[LoadedSource], reporter: Reporter) -> None:
    for index, source in enumerate(sources):
        where = f"spec.dataset.sources[{index}] ({source.name})"
        if source.warning:
            reporter.note(f"warning: {where}: {source.warning}")
        if source.ignored_folders:
            reporter.note(
                f"{where}: skipped {len(source.ignored_folders)} folder(s) not in the class list: "
                + ", ".join(source.ignored_folders[:IGNORED_SHOWN])
            )


def assemble_training_side(
    spec: TrainingRunSpec,
    primary_train: ImageData,
    held_out: ImageData,
    pipeline: Pipeline,
    reporter: Reporter,
) -> tuple[ImageData, tuple[Survey, Survey], list[LoadedSource]]:
    """The primary's training split plus the sources' images, less any source image identical to a
    held-out one; the (training, held-out) surveys, from one decoding pass over both that the data
    checks and the baselines share; and the sources with their counts."""
    sources = load_sources(spec.dataset, primary_train.classes, available_cpus())
    _logged(sources, reporter)
    side = training_side(primary_train, sources)
    thumbnail_size = spec.gates.baseline.thumbnail_size
    reporter.note(f"surveying {len(side.data) + len(held_out)} images (data checks, baselines)")
    side_survey, held_out_survey = (
        survey(side.data, pipeline, thumbnail_size),
        survey(held_out, pipeline, thumbnail_size),
    )
    dropped = held_out_copies(side, side_survey.pixel_digests, held_out_survey.pixel_digests)
    record_counts(side, sources, dropped)
    if not len(dropped):
        return side.data, (side_survey, held_out_survey), sources
    reporter.note(f"dropped {len(dropped)} source image(s) identical to held-out images from training")
    keep = np.setdiff1d(np.arange(len(side.data)), dropped)
    return side.data.subset(keep), (side_survey.subset(keep), held_out_survey), sources
