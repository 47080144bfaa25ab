"""The dataset as an index: which picture each item is and its label; no pixels are held.

A source knows how to read item i as an RGB picture (an image file decoded on demand, or one of
the bundled tiny sets generated on demand). Curation and splits only narrow the index, so memory
does not grow with the dataset's size beyond the list of paths and labels; `pipeline.py` decodes
items per batch.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from crucible.api.trainingrun import DatasetSpec
from crucible.s3 import is_s3_uri
from crucible.trainer.imaging import channels_first, is_candidate_image, open_rgb, resize, to_rgb
from crucible.trainer.remote import check_remote, default_cache_dir, sync

# Bad files named in an error or in the result; the count covers the rest.
BAD_FILES_SHOWN = 5


class DatasetError(ValueError):
    """The dataset cannot be read as specified; the message names the field."""


# The bundled sources keep their items decoded at the training size when it takes at most this much.
PIXEL_CACHE_BYTES = 256 * 1024 * 1024


class Source(Protocol):
    # draft_size: the smallest picture the caller needs on both sides; a source of files may decode a
    # JPEG reduced down to it (`imaging.load_rgb`), in-memory sources ignore it.
    def read(self, item: int, draft_size: int | None = None) -> Image.Image: ...
    def digest(self, item: int) -> bytes: ...
    def name(self, item: int) -> str: ...


class _PixelCache:
    """uint8 [N, 3, size, size] of every item after the eval resize, for the bundled in-memory
    sources only, and only while small (`PIXEL_CACHE_BYTES`): batches are then plain indexing."""

    in_memory = True
    labels: np.ndarray

    def read(self, item: int, draft_size: int | None = None) -> Image.Image:
        raise NotImplementedError

    def eval_pixels(self, size: int, policy: str) -> np.ndarray | None:
        key = (size, policy)
        cache = getattr(self, "_cache", None)
        if cache is not None and cache[0] == key:
            return cache[1]
        if len(self.labels) * 3 * size * size > PIXEL_CACHE_BYTES:
            return None
        pixels = np.stack(
            [channels_first(resize(self.read(i), size, policy)) for i in range(len(self.labels))]
        )
        self._cache = (key, pixels)
        return pixels


class ArraySource(_PixelCache):
    """Pictures already in memory as uint8, grey [N, H, W] or RGB [N, H, W, 3], with their labels
    (indexes into `classes`): the bundled digits, or pictures a program generated."""

    def __init__(
        self, pixels: np.ndarray, labels: np.ndarray, classes: list[str], prefix: str = "image"
    ) -> None:
        if pixels.dtype != np.uint8 or pixels.ndim not in (3, 4) or len(pixels) != len(labels):
            raise ValueError("pixels: uint8 [N, H, W] or [N, H, W, 3] with one label per picture")
        self.pixels = pixels
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.prefix = prefix

    def read(self, item: int, draft_size: int | None = None) -> Image.Image:
        return Image.fromarray(self.pixels[item]).convert("RGB")

    def digest(self, item: int) -> bytes:
        return hashlib.sha256(self.pixels[item].tobytes()).digest()

    def name(self, item: int) -> str:
        return f"{self.prefix}[{item}]"


def digit_pixels() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as the trainer sees them: uint8 [1797, 8, 8] grey (0..16 scaled by
    255/16 and rounded; ink bright, background dark) and their labels. A client that saves these
    arrays as PNGs (mode L) sends pictures that decode to exactly the training pixels; truncating
    instead of rounding gives other pixels, which the held-out duplicate check would not recognise."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.round(digits.images * (255.0 / 16.0)).astype(np.uint8), digits.target


class DigitsSource(ArraySource):
    """scikit-learn's bundled 8x8 digits, held as uint8 (115 KB): see `digit_pixels`."""

    def __init__(self) -> None:
        pixels, labels = digit_pixels()
        super().__init__(pixels, labels, [str(i) for i in range(10)], "digits")


class FakeSource(_PixelCache):
    """Random pictures for smoke tests, each generated from (seed, item)."""

    def __init__(self, count: int, size: int, num_classes: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self.labels = np.random.default_rng([seed, count]).integers(0, num_classes, count).astype(np.int64)

    def read(self, item: int, draft_size: int | None = None) -> Image.Image:
        rng = np.random.default_rng([self.seed, item])
        return Image.fromarray(rng.integers(0, 256, (self.size, self.size, 3), dtype=np.uint8))

    def digest(self, item: int) -> bytes:
        return hashlib.sha256(f"fake:{self.seed}:{self.size}:{item}".encode()).digest()

    def name(self, item: int) -> str:
        return f"fake[{item}]"


class FolderSource:
    """Image files, decoded when read. Paths live in one numpy array: workers forked from the
    trainer share it without copying pages (a list of str objects would be copied on touch)."""

    in_memory = False

    def __init__(self, root: Path, paths: list[str], digests: list[bytes]) -> None:
        self.root = root
        # UTF-8 bytes: numpy's str dtype would take 4 bytes per character.
        self.paths = np.array([path.encode() for path in paths], dtype=bytes)
        self.digests = np.array(digests, dtype="S32")

    def read(self, item: int, draft_size: int | None = None) -> Image.Image:
        return open_rgb(self.root / self.paths[item].decode(), draft_size)

    def digest(self, item: int) -> bytes:
        return bytes(self.digests[item])

    def name(self, item: int) -> str:
        return self.paths[item].decode()


class CombinedSource:
    """Several sources as one: item positions of part k start at `starts[k]`. The training side of a
    run with `spec.dataset.sources` reads the primary's training items and every source's items
    through one of these; names of a source's items carry the source's name (`labelled:3/ab.png`)."""

    def __init__(self, parts: list[Source], sizes: list[int], prefixes: list[str]) -> None:
        self.parts, self.prefixes = parts, prefixes
        self.starts = np.cumsum([0, *sizes[:-1]]).astype(np.int64)
        self.in_memory = all(getattr(part, "in_memory", False) for part in parts)

    def locate(self, item: int) -> tuple[int, int]:
        """(part, position within that part) of a combined position."""
        part = int(np.searchsorted(self.starts, item, side="right")) - 1
        return part, item - int(self.starts[part])

    def read(self, item: int, draft_size: int | None = None) -> Image.Image:
        part, position = self.locate(item)
        return self.parts[part].read(position, draft_size)

    def digest(self, item: int) -> bytes:
        part, position = self.locate(item)
        return self.parts[part].digest(position)

    def name(self, item: int) -> str:
        part, position = self.locate(item)
        return self.prefixes[part] + self.parts[part].name(position)


@dataclass
class DatasetReport:
    """What the loader skipped and why, for the log and the result."""

    bad_files: int = 0
    bad_file_examples: list[str] = field(default_factory=list)
    ignored_folders: list[str] = field(default_factory=list)
    # For an s3:// dataset: objects fetched into the local cache, and objects the cache already held.
    downloaded: int | None = None
    reused: int | None = None

    def to_dict(self) -> dict:
        document: dict = {"badFiles": self.bad_files}
        if self.downloaded is not None:
            document |= {"downloaded": self.downloaded, "reused": self.reused}
        if self.bad_file_examples:
            document["badFileExamples"] = self.bad_file_examples
        if self.ignored_folders:
            document["ignoredFolders"] = {
                "count": len(self.ignored_folders),
                "names": self.ignored_folders[:10],
            }
        return document


@dataclass
class ImageData:
    """Items of a source (positions into it) with their labels, in label order of `classes`."""

    source: Source
    items: np.ndarray  # int64 [N], positions in the source
    labels: torch.Tensor  # int64 [N], indexes into classes
    classes: list[str]
    report: DatasetReport = field(default_factory=DatasetReport)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray | torch.Tensor) -> ImageData:
        index = np.asarray(index, dtype=np.int64)
        return ImageData(
            self.source, self.items[index], self.labels[torch.as_tensor(index)], self.classes, self.report
        )

    def image_names(self) -> list[str]:
        """Where each image came from (a path under the dataset root, or `digits[i]`), so a check can
        name the images at fault."""
        return [self.source.name(item) for item in self.items.tolist()]

    def digests(self) -> list[bytes]:
        """Each image's content hash (the file's bytes for imageFolder), without decoding it."""
        return [self.source.digest(item) for item in self.items.tolist()]

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def fingerprint(self) -> str:
        """From each item's content hash (file bytes for folders) and label, never from pixels."""
        digest = hashlib.sha256()
        for item, label in zip(self.items.tolist(), self.labels.tolist(), strict=True):
            digest.update(self.source.digest(item))
            digest.update(label.to_bytes(4, "little"))
        digest.update("\0".join(self.classes).encode())
        return digest.hexdigest()[:16]


def folder_path(uri: str, field: str = "spec.dataset.uri") -> Path:
    """The local directory of a path or file:// URI (pvc:// is a local path only inside a pod)."""
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise DatasetError(
            f"{field}: scheme {scheme}:// is not supported here; allowed: a local path or file://"
        )
    return Path(uri)


def check_source(spec: DatasetSpec) -> None:
    """Fail fast, before any work starts, when an imageFolder path does not exist (or, for s3://,
    the URI is malformed or there are no credentials)."""
    if spec.source == "imageFolder" and is_s3_uri(spec.uri):
        check_remote(spec.uri or "")
    elif spec.source == "imageFolder":
        root = folder_path(spec.uri or "")
        if not root.is_dir():
            raise DatasetError(f"spec.dataset.uri: {spec.uri!r} is not a directory")


class _FileCheck(torch.utils.data.Dataset):
    """Reads each file once: its sha256 (for the fingerprint) and whether it decodes."""

    def __init__(self, root: Path, paths: list[str]) -> None:
        self.root, self.paths = root, paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[bytes, str]:
        try:
            data = (self.root / self.paths[index]).read_bytes()
            # A small draft decode reads every byte of a JPEG (truncation shows) at a fraction of the cost.
            with Image.open(io.BytesIO(data)) as image:
                if image.format == "JPEG":
                    image.draft("RGB", (64, 64))
                image.load()
                to_rgb(image)
        except Exception as error:  # Pillow raises many kinds for a bad file; all mean "unreadable"
            return b"", f"{type(error).__name__}: {error}"
        return hashlib.sha256(data).digest(), ""


def _check_files(root: Path, paths: list[str], workers: int) -> list[tuple[bytes, str]]:
    loader = torch.utils.data.DataLoader(
        _FileCheck(root, paths), batch_size=64, num_workers=workers, collate_fn=list
    )
    return [entry for batch in loader for entry in batch]


def class_folders(root: Path) -> list[str]:
    """The class folder names under `root`, sorted (hidden folders skipped)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_folder(spec: DatasetSpec) -> tuple[Path, list[str], list[int], list[str], list[str]]:
    """Image files (relative paths, sorted) with labels, the classes, and folders left out."""
    check_source(spec)
    root = folder_path(spec.uri or "")
    found = class_folders(root)
    if not found:
        raise DatasetError(f"spec.dataset.uri: {spec.uri!r} holds no class folders")
    classes = list(spec.classes) or found
    ignored = [name for name in found if name not in classes]
    paths, labels = class_files(root, classes)
    return root, paths, labels, classes, ignored


def class_files(root: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    """Image files under `root/<class>/` (relative paths, sorted) with their labels (class positions)."""
    paths, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        for file in sorted(folder.rglob("*")):
            if file.is_file() and is_candidate_image(file) and not _hidden(file.relative_to(folder)):
                paths.append(str(file.relative_to(root)))
                labels.append(label)
    return paths, labels


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _load_image_folder(spec: DatasetSpec, workers: int, cache_dir: Path | None) -> ImageData:
    synced = None
    if is_s3_uri(spec.uri):
        check_remote(spec.uri or "")
        synced = sync(spec.uri or "", cache_dir or default_cache_dir())
        spec = spec.model_copy(update={"uri": str(synced.directory)})
    root, paths, labels, classes, ignored = _list_folder(spec)
    if not paths:
        raise DatasetError(f"spec.dataset.uri: no images found under {spec.uri!r}")
    data = checked_folder(root, paths, labels, classes, spec.max_bad_files, workers, spec.uri or "")
    data.report.ignored_folders = ignored
    if synced is not None:
        data.report.downloaded, data.report.reused = synced.downloaded, synced.reused
    return data


def checked_folder(
    root: Path, paths: list[str], labels: list[int], classes: list[str], max_bad: int, workers: int, uri: str
) -> ImageData:
    """The readable files among `paths` as an ImageData; more than `max_bad` unreadable files fail."""
    checks = _check_files(root, paths, workers)
    bad = [f"{path} ({error})" for path, (_, error) in zip(paths, checks, strict=True) if error]
    if len(bad) > max_bad:
        raise DatasetError(
            f"spec.dataset.maxBadFiles: {len(bad)} unreadable image file(s) under {uri!r}, more than "
            f"the {max_bad} allowed: {'; '.join(bad[:BAD_FILES_SHOWN])}"
            + (" ..." if len(bad) > BAD_FILES_SHOWN else "")
        )
    good = [i for i, (_, error) in enumerate(checks) if not error]
    source = FolderSource(root, [paths[i] for i in good], [checks[i][0] for i in good])
    report = DatasetReport(len(bad), [entry.split(" (")[0] for entry in bad[:BAD_FILES_SHOWN]])
    labels_kept = torch.tensor([labels[i] for i in good], dtype=torch.long)
    return ImageData(source, np.arange(len(good), dtype=np.int64), labels_kept, classes, report)


def load_dataset(spec: DatasetSpec, seed: int, workers: int = 0, cache_dir: Path | None = None) -> ImageData:
    """The raw dataset named by the spec, before curation; `workers` processes check image files, and
    an s3:// dataset is brought up to date in `cache_dir` (default: `remote.default_cache_dir()`)."""
    if spec.source == "digits":
        source: ArraySource | FakeSource = DigitsSource()
        classes = source.classes
    elif spec.source == "fake":
        classes = list(spec.classes) or [f"class{i}" for i in range(10)]
        source = FakeSource(spec.fake_samples, spec.image_size, len(classes), seed)
    else:
        return _load_image_folder(spec, workers, cache_dir)
    labels = torch.from_numpy(source.labels)
    return ImageData(source, np.arange(len(labels), dtype=np.int64), labels, classes)


def select_classes(data: ImageData, classes: list[str]) -> ImageData:
    """Keep only the fixed class list, relabelled in its order. Classes absent from the data stay
    in the list, so the data checks can report them."""
    if not classes or classes == data.classes:
        return data
    position = {name: i for i, name in enumerate(classes)}
    old_to_new = torch.tensor([position.get(name, -1) for name in data.classes], dtype=torch.long)
    new_labels = old_to_new[data.labels]
    keep = (new_labels >= 0).numpy()
    return ImageData(data.source, data.items[keep], new_labels[keep], list(classes), data.report)


def curate(data: ImageData, spec: DatasetSpec, seed: int) -> ImageData:
    """Fixed classes, then per-class sampling, limit and balance, all seeded and stratified."""
    data = select_classes(data, spec.classes)
    rng = np.random.default_rng(seed)
    labels = data.labels.numpy()
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in range(len(data.classes))]
    if spec.sample_fraction < 1.0:
        per_class = [
            idx[: max(1, round(len(idx) * spec.sample_fraction))] if len(idx) else idx for idx in per_class
        ]
    if spec.per_class_limit:
        per_class = [idx[: spec.per_class_limit] for idx in per_class]
    if spec.balance:
        smallest = min((len(idx) for idx in per_class if len(idx)), default=0)
        per_class = [idx[:smallest] for idx in per_class]
    keep = np.sort(np.concatenate(per_class)) if per_class else np.array([], dtype=np.int64)
    return data.subset(keep)


def split(data: ImageData, test_fraction: float, seed: int) -> tuple[ImageData, ImageData]:
    """Stratified train/test split; falls back to a plain split when a class is too small or a side
    too small to hold every class."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(data))
    labels = data.labels.numpy()
    counts = np.bincount(labels, minlength=len(data.classes))
    present = counts[counts > 0]
    test_count = math.ceil(test_fraction * len(data))
    # Stratifying needs two images of each class and a class's share on both sides.
    feasible = len(present) and present.min() >= 2 and len(present) <= min(test_count, len(data) - test_count)
    stratify = labels if feasible else None
    train_idx, test_idx = train_test_split(
        index, test_size=test_fraction, random_state=seed, shuffle=True, stratify=stratify
    )
    return data.subset(np.sort(train_idx)), data.subset(np.sort(test_idx))
