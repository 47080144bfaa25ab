"""One decoding pass over a split for what the data checks and the baselines need of its pictures.

Each picture is read through the pipeline (the eval transform at the training size, as the network
sees it) in small batches, and only two small figures per image are kept: its thumbnail (the linear
baseline's features) and the spread of its pixels (near-constant images). Memory holds
[N, 3 * t * t + 1] floats, never the pictures, whatever the dataset's size or resolution.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from crucible.trainer import baselines, data_checks
from crucible.trainer.data import ImageData
from crucible.trainer.pipeline import Pipeline

# Images decoded per batch: a few MB of uint8 at 224 px, and the thumbnails' float64 copy of one batch.
SURVEY_BATCH = 32


@dataclass
class Survey:
    thumbnails: np.ndarray  # float32 [N, 3 * size * size] in [0, 1], in the split's item order
    spread: np.ndarray  # float32 [N], the std of each image's pixels on a 0..1 scale
    # S16 [N]: a digest of each image's pixels as the network sees them (after the eval resize), so the
    # same picture matches whatever its file format or the dataset it came from.
    pixel_digests: np.ndarray

    def subset(self, keep: np.ndarray) -> Survey:
        return Survey(self.thumbnails[keep], self.spread[keep], self.pixel_digests[keep])


def pixel_digests(pixels: np.ndarray) -> np.ndarray:
    """A 16-byte digest of each uint8 image [N, 3, H, W]."""
    return np.array(
        [hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest() for image in pixels],
        dtype="S16",
    )


def survey(data: ImageData, pipeline: Pipeline, thumbnail_size: int) -> Survey:
    """Thumbnails, pixel spreads and pixel digests of every image of `data`, in order."""
    thumbnails, spreads, digests = [], [], []
    for pixels, _ in pipeline.eval_feed(data, None, batch_size=SURVEY_BATCH).pixels():
        array = pixels.numpy()
        thumbnails.append(baselines.thumbnails(array, thumbnail_size).astype(np.float32))
        spreads.append(data_checks.pixel_spread(array))
        digests.append(pixel_digests(array))
    width = 3 * thumbnail_size * thumbnail_size
    if not thumbnails:
        empty = np.zeros(0, dtype=np.float32)
        return Survey(np.zeros((0, width), dtype=np.float32), empty, np.zeros(0, dtype="S16"))
    return Survey(np.concatenate(thumbnails), np.concatenate(spreads), np.concatenate(digests))
