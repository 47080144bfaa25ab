from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crucible.api.trainingrun import AugmentationSpec, DatasetSpec
from crucible.trainer.data import curate, load_dataset, split
from crucible.trainer.pipeline import Feed, Pipeline, Transform, _libc, normalization_of, release_free_memory

CPU = torch.device("cpu")


def _digits(**fields):
    spec = DatasetSpec(**fields)
    return curate(load_dataset(spec, seed=1), spec, seed=1)


def test_digits_arrive_in_batches_as_rgb_in_unit_range():
    data = _digits(imageSize=16)
    assert len(data) == 1797 and data.classes == [str(i) for i in range(10)]
    x, y = next(iter(Feed(data, Transform(16), None, CPU, batch_size=64)))
    assert x.shape == (64, 3, 16, 16) and x.dtype == torch.float32 and y.shape == (64,)
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.5


def test_fixed_classes_are_kept_and_relabelled_in_order():
    data = _digits(classes=["7", "3"], imageSize=8)
    assert data.classes == ["7", "3"]
    assert set(data.labels.tolist()) == {0, 1}
    assert data.class_counts() == [179, 183]


def test_per_class_limit_sample_fraction_and_balance():
    assert max(_digits(perClassLimit=20, imageSize=8).class_counts()) == 20
    assert sum(_digits(sampleFraction=0.5, imageSize=8).class_counts()) in range(890, 910)
    assert len(set(_digits(balance=True, imageSize=8).class_counts())) == 1


def test_split_is_stratified_and_normalization_uses_the_training_split_only():
    data = _digits(imageSize=8)
    train, test = split(data, 0.2, seed=3)
    assert len(test) == 360 and len(train) == 1437
    assert all(
        abs(a / len(train) - b / len(test)) < 0.01
        for a, b in zip(train.class_counts(), test.class_counts(), strict=True)
    )
    norm = normalization_of(train, Transform(8), seed=0)
    batches = [x for x, _ in Feed(train, Transform(8), norm, CPU, batch_size=500)]
    normalized = torch.cat(batches)
    assert torch.allclose(normalized.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(normalized.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    assert norm != normalization_of(test, Transform(8), seed=0)


def test_pretrained_weights_normalize_with_imagenet_statistics():
    data = _digits(imageSize=8)
    assert Pipeline(8, "stretch", None, CPU, pretrained=True).normalization(data, 0).source == "imagenet"


def test_augmentation_changes_pixels_per_item_seed_and_is_repeatable():
    data = _digits(imageSize=16)
    spec = AugmentationSpec(randomCrop=True, cropPadding=2, horizontalFlip=True)
    plain = next(iter(Feed(data, Transform(16), None, CPU, 32)))[0]
    augmented = [
        next(iter(Feed(data, Transform(16, augmentation=spec), None, CPU, 32, seed=5)))[0] for _ in "ab"
    ]
    assert augmented[0].shape == plain.shape and not torch.equal(augmented[0], plain)
    assert torch.equal(augmented[0], augmented[1])


def test_an_epoch_is_the_same_whatever_the_number_of_workers():
    data = load_dataset(DatasetSpec(source="fake", fakeSamples=40, imageSize=12), seed=0)
    spec = AugmentationSpec(rotation=20, colorJitter=0.3, randomResizedCrop=True, horizontalFlip=True)
    runs = []
    for workers in (0, 2):
        feed = Feed(
            data, Transform(12, augmentation=spec), None, CPU, 8, seed=3, shuffle=True, workers=workers
        )
        feed.set_epoch(2)
        runs.append(torch.cat([x for x, _ in feed]))
    assert torch.equal(runs[0], runs[1])


def test_the_fingerprint_follows_content_and_labels():
    data = _digits(imageSize=8)
    assert data.fingerprint() == _digits(imageSize=16).fingerprint()
    assert data.subset(np.arange(100)).fingerprint() != data.subset(np.arange(1, 101)).fingerprint()


def test_evaluation_batches_are_no_larger_than_training_batches():
    data = load_dataset(DatasetSpec(source="digits", image_size=8), seed=0)
    pipeline = Pipeline(8, "stretch", None, CPU, eval_batch_size=48)
    sizes = [len(y) for _, y in pipeline.eval_feed(data, None)]
    assert max(sizes) == 48 and sum(sizes) == len(data)
    # An explicit size (the survey's small batches) still wins.
    assert max(len(y) for _, y in pipeline.eval_feed(data, None, batch_size=32)) == 32


def _resident_anonymous_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no /proc/self/status RssAnon on this system")


def test_free_heap_pages_are_handed_back_before_workers_start():
    if _libc() is None:
        pytest.skip("no glibc malloc_trim here")
    # 200 MB in 64 KiB blocks (under glibc's mmap threshold: they live in the heap), then one block
    # kept above them, so freeing the rest leaves a hole the heap does not give back by itself.
    blocks = [bytearray(64 * 1024) for _ in range(3200)]
    keep = bytearray(64 * 1024)
    del blocks
    before = _resident_anonymous_bytes()
    release_free_memory()
    assert before - _resident_anonymous_bytes() > 100 * 1024 * 1024
    assert len(keep) == 64 * 1024
