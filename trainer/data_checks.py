"""Checks of the data itself, each able to fail on real data: missing classes, imbalance, classes too
small for the folds, images shared by the training and held-out splits, blank images.

Pure functions of class counts, content digests, per-image pixel spreads and file names (the
pictures themselves are read batch by batch elsewhere, see survey.py); each failed check names the
classes or files at fault.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crucible.api.result import Check
from crucible.trainer.checks import measure

# An image whose pixels vary by less than this (on a 0..1 scale) carries no picture.
NEAR_CONSTANT_STD = 0.01
EXAMPLES_SHOWN = 3


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def _examples(names: Sequence[str], count: int) -> str:
    shown = ", ".join(str(name) for name in names[:EXAMPLES_SHOWN])
    return f" (e.g. {shown}{', ...' if count > EXAMPLES_SHOWN else ''})" if shown else ""


def label_set(counts: Sequence[int], classes: Sequence[str]) -> Check:
    missing = [name for name, count in zip(classes, counts, strict=True) if count == 0]
    if len(missing) == 1:
        message = f"class {_quoted(missing)} has no images"
    else:
        message = f"classes {_quoted(missing)} have no images"
    return measure(len(missing), "<=", 0, message)


def class_balance(counts: Sequence[int], classes: Sequence[str], min_ratio: float) -> Check:
    present = [(count, name) for name, count in zip(classes, counts, strict=True) if count > 0]
    if not present:
        return measure(0.0, ">=", min_ratio, "no class has images")
    (small, small_name), (large, large_name) = min(present), max(present)
    ratio = small / large
    message = (
        f"class '{small_name}' has {small} images, class '{large_name}' has {large} "
        f"(ratio {ratio:.3g}, must be >= {min_ratio:g}); balance the classes or lower minClassBalance"
    )
    return measure(ratio, ">=", min_ratio, message)


def smallest_class(counts: Sequence[int], classes: Sequence[str], folds: int) -> Check:
    """Stratified k-fold needs every class in every fold."""
    present = [(count, name) for name, count in zip(classes, counts, strict=True) if count > 0]
    count, name = min(present) if present else (0, "?")
    message = (
        f"class '{name}' has {count} training images, fewer than the {folds} cross-validation folds; "
        "lower spec.gates.crossValidation.folds or add data"
    )
    return measure(count, ">=", folds, message)


def duplicates(
    train_hashes: Sequence[bytes | str],
    held_out_hashes: Sequence[bytes | str],
    held_out_names: Sequence[str],
    limit: int,
) -> Check:
    """Held-out images whose content (a source's digest: the file's bytes, or the pixels of a bundled
    set) also appears in the training split: they inflate held-out scores."""
    seen = set(train_hashes)
    shared = [name for name, digest in zip(held_out_names, held_out_hashes, strict=True) if digest in seen]
    message = f"{len(shared)} held-out images also in the training split{_examples(shared, len(shared))}"
    return measure(len(shared), "<=", limit, message)


def pixel_spread(images: np.ndarray) -> np.ndarray:
    """The std of each image's pixels [N, ...] (uint8, or floats in [0, 1]) on a 0..1 scale."""
    array = np.asarray(images)
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    return array.reshape(len(array), -1).astype(np.float32).std(axis=1) / scale


def constant_images(spread: Sequence[float], names: Sequence[str], limit: int) -> Check:
    """Images whose pixels are (nearly) all the same value (`pixel_spread` under NEAR_CONSTANT_STD):
    blank, failed decodes, placeholders."""
    blank = [name for name, std in zip(names, spread, strict=True) if std < NEAR_CONSTANT_STD]
    message = f"{len(blank)} constant or near-constant images{_examples(blank, len(blank))}"
    return measure(len(blank), "<=", limit, message)
