"""One decoding pass over a split for what the data checks and the baselines need of its pictures.

Each picture is read through the pipeline (the eval transform at the training size, as the network
sees it) in small batches, and only two small figures per image are kept: its thumbnail (the linear
baseline's features) and the spread of its pixels (near-constant images). Memory holds
[N, 3 * t * t + 1] floats, never the pictures, whatever the dataset's size or resolution.
"""

from __future__ import annotations

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


def survey(data: ImageData, pipeline: Pipeline, thumbnail_size: int) -> Survey:
    """Thumbnails and pixel spreads of every image of `data`, in order."""
    thumbnails, spreads = [], []
    for pixels, _ in pipeline.eval_feed(data, None, batch_size=SURVEY_BATCH).pixels():
        array = pixels.numpy()
        thumbnails.append(baselines.thumbnails(array, thumbnail_size).astype(np.float32))
        spreads.append(data_checks.pixel_spread(array))
    width = 3 * thumbnail_size * thumbnail_size
    if not thumbnails:
        return Survey(np.zeros((0, width), dtype=np.float32), np.zeros(0, dtype=np.float32))
    return Survey(np.concatenate(thumbnails), np.concatenate(spreads))
