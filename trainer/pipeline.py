"""Pictures in batches: decoded per item by DataLoader workers, normalized per batch on the device.

Every stage reads data through here: the normalization statistics, the data survey (data checks and
baselines), the debug gate, each cross-validation fold, final training, the validation and held-out
evaluations.

Randomness is carried by the batches, not by processes: the sampler (in the trainer's process)
draws each epoch's order and one seed per item from (seed, epoch), and an item's augmentation uses
only its own seed. So an epoch is the same whatever the number of workers, and a run resumed at
an epoch boundary sees exactly the batches an uninterrupted run saw.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from crucible.api.trainingrun import AugmentationSpec
from crucible.resources import available_cpus
from crucible.trainer.data import DatasetError, ImageData
from crucible.trainer.imaging import channels_first, resize

# Normalization statistics and the data checks look at this many training images at most.
STATS_SAMPLE = 2000


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str = "data"  # or "imagenet": the statistics pretrained weights were trained with

    @classmethod
    def of(cls, images: torch.Tensor) -> Normalization:
        """Per-channel statistics of float images [N, 3, H, W] in [0, 1]."""
        mean = images.double().mean(dim=(0, 2, 3))
        std = images.double().std(dim=(0, 2, 3)).clamp_min(1e-6)
        return cls(tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist()))

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "source": self.source}


IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "imagenet")


@dataclass(frozen=True)
class Transform:
    """What happens to one picture: the eval resize, or the training augmentations."""

    size: int
    resize: str = "stretch"
    augmentation: AugmentationSpec | None = None

    @property
    def needs_picture(self) -> bool:
        """Whether the transform works on the decoded picture, not only on eval-resized pixels."""
        spec = self.augmentation
        return spec is not None and bool(spec.random_resized_crop or spec.rotation or spec.color_jitter)

    @property
    def draft_size(self) -> int | None:
        """How small a JPEG may be decoded (`imaging.load_rgb`): the input size, as the server does,
        except for a random resized crop, which may enlarge a small part of the full-size photo."""
        spec = self.augmentation
        return None if spec is not None and spec.random_resized_crop else self.size

    def __call__(self, image: Image.Image, seed: int) -> np.ndarray:
        spec = self.augmentation
        if spec is None:
            return channels_first(resize(image, self.size, self.resize))
        rng = np.random.default_rng(seed)
        if spec.random_resized_crop:
            box = _random_box(image.size, spec.random_resized_crop_scale, rng)
            image = image.resize((self.size, self.size), Image.BILINEAR, box=box)
        else:
            image = resize(image, self.size, self.resize)
        if spec.rotation:
            image = image.rotate(float(rng.uniform(-spec.rotation, spec.rotation)), Image.BILINEAR)
        if spec.color_jitter:
            low, high = 1 - spec.color_jitter, 1 + spec.color_jitter
            for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
                image = enhance(image).enhance(float(rng.uniform(low, high)))
        return self.on_pixels(channels_first(image), rng)

    def on_pixels(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The augmentations that work on resized pixels [3, size, size]: crop and flip."""
        spec = self.augmentation
        if spec is None:
            return pixels
        if spec.random_crop and spec.crop_padding > 0:
            pad = spec.crop_padding
            padded = np.pad(pixels, ((0, 0), (pad, pad), (pad, pad)))
            dy, dx = rng.integers(0, 2 * pad + 1, 2)
            pixels = padded[:, dy : dy + self.size, dx : dx + self.size]
        if spec.horizontal_flip and rng.random() < 0.5:
            pixels = pixels[:, :, ::-1]
        return pixels


def _random_box(
    size: tuple[int, int], scale: list[float], rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """torchvision's RandomResizedCrop parameters: area fraction in `scale`, aspect in [3/4, 4/3]."""
    width, height = size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = math.sqrt(target * aspect), math.sqrt(target / aspect)
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
            return (left, top, left + w, top + h)
    side = min(width, height)  # fallback: the centre square
    return ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)


def uses_augmentation(spec: AugmentationSpec) -> bool:
    return bool(
        spec.random_crop
        or spec.horizontal_flip
        or spec.random_resized_crop
        or spec.color_jitter
        or spec.rotation
    )


def collate(samples: list | tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Items into one batch, unless `__getitems__` made the batch already."""
    return samples if isinstance(samples, tuple) else default_collate(samples)


class PictureDataset(Dataset):
    """Item (position, seed) -> (uint8 pixels [3, H, W], label)."""

    def __init__(self, data: ImageData, transform: Transform) -> None:
        self.data, self.transform = data, transform
        self.labels = data.labels.numpy()
        cached = getattr(data.source, "eval_pixels", None)
        self.pixels = (
            cached(transform.size, transform.resize) if cached and not transform.needs_picture else None
        )

    def __getitems__(self, keys: list[tuple[int, int]]) -> list | tuple[torch.Tensor, torch.Tensor]:
        """A whole batch by indexing, for sources cached at the training size; else item by item."""
        if self.pixels is None:
            return [self[key] for key in keys]
        positions = np.array([position for position, _ in keys])
        pixels = self.pixels[self.data.items[positions]]
        if self.transform.augmentation is not None:
            pixels = np.stack(
                [
                    self.transform.on_pixels(image, np.random.default_rng(seed))
                    for image, (_, seed) in zip(pixels, keys, strict=True)
                ]
            )
        return torch.from_numpy(np.ascontiguousarray(pixels)), torch.from_numpy(self.labels[positions])

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        position, seed = key
        item = int(self.data.items[position])
        try:
            image = self.data.source.read(item, self.transform.draft_size)
        except Exception as error:  # a file that changed or broke after the dataset was checked
            raise DatasetError(
                f"spec.dataset.uri: cannot read image {self.data.source.name(item)}: {error}"
            ) from None
        pixels = self.transform(image, seed)
        return torch.from_numpy(np.ascontiguousarray(pixels)), int(self.labels[position])


class EpochBatches(Sampler):
    """Batches of (position, item seed), shuffled per epoch from (seed, epoch)."""

    def __init__(self, count: int, batch_size: int, seed: int, shuffle: bool) -> None:
        self.count, self.batch_size, self.seed, self.shuffle = count, batch_size, seed, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[tuple[int, int]]:
        starts = range(0, self.count, self.batch_size)
        # Drop a last training batch of one image: BatchNorm cannot train on it.
        return [
            (start, min(start + self.batch_size, self.count))
            for start in starts
            if not self.shuffle or min(start + self.batch_size, self.count) - start > 1 or self.count == 1
        ]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.count) if self.shuffle else np.arange(self.count)
        seeds = rng.integers(0, 2**62, self.count)
        for start, stop in self._batches():
            yield [(int(order[i]), int(seeds[i])) for i in range(start, stop)]

    def __len__(self) -> int:
        return len(self._batches())


def loader_workers(data: ImageData) -> int:
    """Worker processes from the CPU quota; the bundled in-memory sources decode faster in-process."""
    return 0 if getattr(data.source, "in_memory", False) else available_cpus()


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's `malloc_trim`).

    The heap keeps what earlier stages freed (decoded batches, activations) resident; workers forked
    now would each count those pages again, and the trainer's own footprint would never shrink."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only; musl has none
    except (OSError, AttributeError):
        return None
    return libc


class Feed:
    """A DataLoader over `data` whose batches arrive normalized, float32, on `device`."""

    def __init__(
        self,
        data: ImageData,
        transform: Transform,
        norm: Normalization | None,
        device: torch.device,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = False,
        persistent: bool = False,
        workers: int | None = None,
    ) -> None:
        self.data, self.norm, self.device = data, norm, device
        self.sampler = EpochBatches(len(data), batch_size, seed, shuffle)
        workers = loader_workers(data) if workers is None else workers
        self.loader = DataLoader(
            PictureDataset(data, transform),
            batch_sampler=self.sampler,
            num_workers=workers,
            persistent_workers=persistent and workers > 0,
            pin_memory=device.type == "cuda",
            collate_fn=collate,
            # Worker base seeds come from here, not from the global generator the model's dropout uses.
            generator=torch.Generator().manual_seed(seed),
        )
        if norm is not None:
            self._mean = torch.tensor(norm.mean, device=device).view(1, 3, 1, 1)
            self._std = torch.tensor(norm.std, device=device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def pixels(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches as decoded: uint8 pixels [B, 3, H, W] and labels, on the CPU."""
        yield from self.loader

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.loader.num_workers:
            # Forked workers share the trainer's pages until written; a garbage collection in a worker
            # would write to every object's header and copy them all. Frozen objects are never visited;
            # collecting first keeps garbage from being frozen with them.
            gc.collect()
            gc.freeze()
            release_free_memory()
        for pixels, labels in self.loader:
            # uint8 crosses to the device (a quarter of float32's bytes), then is scaled there.
            x = pixels.to(self.device, non_blocking=True).float().div_(255.0)
            if self.norm is not None:
                x = x.sub_(self._mean).div_(self._std)
            yield x, labels.to(self.device, non_blocking=True)


def sample(data: ImageData, limit: int, seed: int) -> ImageData:
    """At most `limit` items, drawn with a seed."""
    if len(data) <= limit:
        return data
    picked = np.sort(np.random.default_rng(seed).choice(len(data), limit, replace=False))
    return data.subset(picked)


def normalization_of(
    data: ImageData, transform: Transform, seed: int, batch_size: int = 256
) -> Normalization:
    """Per-channel mean and std of a bounded sample of `data`, accumulated batch by batch."""
    feed = Feed(sample(data, STATS_SAMPLE, seed), transform, None, torch.device("cpu"), batch_size)
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    for x, _ in feed:
        x = x.double()
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / max(count, 1)
    std = ((squares / max(count, 1) - mean * mean).clamp_min(0) * count / max(count - 1, 1)).sqrt()
    std = std.clamp_min(1e-6)
    return Normalization(tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist()))


@dataclass
class Pipeline:
    """How this run turns items into batches: sizes, resize policy, augmentation, device."""

    size: int
    resize: str
    augmentation: AugmentationSpec | None
    device: torch.device
    pretrained: bool = False
    # Evaluation batches are no larger than training's, so evaluating never needs more memory than
    # training did (without gradients it needs less).
    eval_batch_size: int = 256

    @property
    def eval_transform(self) -> Transform:
        return Transform(self.size, self.resize)

    def normalization(self, data: ImageData, seed: int) -> Normalization:
        """ImageNet statistics for pretrained weights, else those of a bounded sample of `data`."""
        return IMAGENET if self.pretrained else normalization_of(data, self.eval_transform, seed)

    def train_feed(self, data: ImageData, norm: Normalization, batch_size: int, seed: int) -> Feed:
        transform = Transform(self.size, self.resize, self.augmentation)
        # Workers are not kept between epochs: the held-out evaluation after each epoch has workers of
        # its own, and idle persistent ones beside them doubled the processes (and the pod's memory:
        # 7.8 GiB summed RSS against 2.8 for the bare loop in benchmarks/data_scale.py). Forking
        # them again costs about a second an epoch.
        return Feed(data, transform, norm, self.device, batch_size, seed, shuffle=True)

    def eval_feed(
        self,
        data: ImageData,
        norm: Normalization | None,
        batch_size: int | None = None,
        persistent: bool = False,
    ) -> Feed:
        size = batch_size or self.eval_batch_size
        return Feed(data, self.eval_transform, norm, self.device, size, persistent=persistent)
