from __future__ import annotations

import torch

from crucible.api.trainingrun import AugmentationSpec, DatasetSpec
from crucible.trainer.data import Normalization, curate, load_dataset, split
from crucible.trainer.engine import augment


def _digits(**fields):
    spec = DatasetSpec(**fields)
    return curate(load_dataset(spec, seed=1), spec, seed=1)


def test_digits_load_as_rgb_in_unit_range():
    data = _digits(imageSize=16)
    assert data.images.shape == (1797, 3, 16, 16)
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    assert data.classes == [str(i) for i in range(10)]


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
    norm = Normalization.of(train.images)
    assert torch.allclose(norm.apply(train.images).mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert norm != Normalization.of(test.images)


def test_augmentation_keeps_shape_and_changes_pixels():
    images = torch.rand(8, 3, 16, 16)
    spec = AugmentationSpec(randomCrop=True, cropPadding=2, horizontalFlip=True)
    out = augment(images, spec, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and not torch.equal(out, images)
