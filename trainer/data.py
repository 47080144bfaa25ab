"""Load and curate image data into in-memory tensors, split, and normalize.

Images are held as float32 tensors [N, 3, H, W] scaled to [0, 1], the same scale the server gets
from `pixels / 255`, so a model trained here sees at inference exactly what it saw in training.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from crucible.api.trainingrun import DatasetSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DatasetError(ValueError):
    """The dataset cannot be read as specified; the message names the field."""


@dataclass
class ImageData:
    images: torch.Tensor  # float32 [N, 3, H, W] in [0, 1]
    labels: torch.Tensor  # int64 [N], indexes into classes
    classes: list[str]
    # Where each image came from (a file path relative to the dataset root, or "#index"), so a check
    # can name the images at fault.
    names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray | torch.Tensor) -> ImageData:
        index = torch.as_tensor(index, dtype=torch.long)
        names = [self.names[i] for i in index.tolist()] if self.names is not None else None
        return ImageData(self.images[index], self.labels[index], self.classes, names)

    def image_names(self) -> list[str]:
        return self.names if self.names is not None else [f"#{i}" for i in range(len(self))]

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        digest.update(self.images.numpy().tobytes())
        digest.update(self.labels.numpy().tobytes())
        digest.update("\0".join(self.classes).encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def of(cls, images: torch.Tensor) -> Normalization:
        """Per-channel statistics; call it on the training split only."""
        mean = images.mean(dim=(0, 2, 3))
        std = images.std(dim=(0, 2, 3)).clamp_min(1e-6)
        return cls(tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist()))

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype).view(1, 3, 1, 1)
        return (images - mean) / std

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    resized = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return resized.clamp_(0.0, 1.0)


def _load_digits(image_size: int) -> ImageData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 8x8 ink intensities 0..16; ink is bright, background dark.
    pixels = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = _resize(pixels, image_size).expand(-1, 3, -1, -1).contiguous()
    labels = torch.tensor(digits.target, dtype=torch.long)
    return ImageData(images, labels, [str(name) for name in digits.target_names])


def _load_fake(spec: DatasetSpec, seed: int) -> ImageData:
    from torchvision.datasets import FakeData
    from torchvision.transforms.functional import pil_to_tensor

    num_classes = len(spec.classes) or 10
    fake = FakeData(
        size=spec.fake_samples,
        image_size=(3, spec.image_size, spec.image_size),
        num_classes=num_classes,
        random_offset=seed,
    )
    images, labels = zip(*((pil_to_tensor(image), label) for image, label in fake), strict=True)
    stacked = torch.stack(images).float() / 255.0
    classes = list(spec.classes) or [f"class{i}" for i in range(num_classes)]
    return ImageData(stacked, torch.tensor(labels, dtype=torch.long), classes)


def _folder_path(uri: str) -> Path:
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise DatasetError(
            f"spec.dataset.uri: scheme {scheme}:// is not supported here; allowed: a local path or file://"
        )
    return Path(uri)


def check_source(spec: DatasetSpec) -> None:
    """Fail fast, before any work starts, when an imageFolder path does not exist."""
    if spec.source == "imageFolder":
        root = _folder_path(spec.uri or "")
        if not root.is_dir():
            raise DatasetError(f"spec.dataset.uri: {spec.uri!r} is not a directory")


def _load_image_folder(spec: DatasetSpec) -> ImageData:
    from PIL import Image, UnidentifiedImageError

    check_source(spec)
    root = _folder_path(spec.uri or "")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"spec.dataset.uri: {spec.uri!r} holds no class folders")
    tensors, labels, names = [], [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as image:
                    rgb = image.convert("RGB").resize((spec.image_size, spec.image_size), Image.BILINEAR)
            except (UnidentifiedImageError, OSError) as error:
                raise DatasetError(f"spec.dataset.uri: cannot read image {file}: {error}") from None
            tensors.append(torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1))
            labels.append(label)
            names.append(f"{name}/{file.name}")
    if not tensors:
        raise DatasetError(f"spec.dataset.uri: no images found under {spec.uri!r}")
    images = torch.stack(tensors).float() / 255.0
    return ImageData(images, torch.tensor(labels, dtype=torch.long), classes, names)


def load_dataset(spec: DatasetSpec, seed: int) -> ImageData:
    """The raw dataset named by the spec, before curation."""
    if spec.source == "digits":
        return _load_digits(spec.image_size)
    if spec.source == "fake":
        return _load_fake(spec, seed)
    return _load_image_folder(spec)


def select_classes(data: ImageData, classes: list[str]) -> ImageData:
    """Keep only the fixed class list, relabelled in its order. Classes absent from the data stay
    in the list, so the data checks can report them."""
    if not classes:
        return data
    position = {name: i for i, name in enumerate(classes)}
    old_to_new = torch.tensor([position.get(name, -1) for name in data.classes], dtype=torch.long)
    new_labels = old_to_new[data.labels]
    keep = new_labels >= 0
    names = (
        [n for n, k in zip(data.names, keep.tolist(), strict=True) if k] if data.names is not None else None
    )
    return ImageData(data.images[keep], new_labels[keep], list(classes), names)


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
