"""An image folder in an S3-compatible store (moto's server over HTTP): trained from a local cache
that is filled once and then only refreshed with the objects that changed."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from crucible.trainer.remote import sync
from crucible.trainer.run import RunContext, train
from tests.conftest import fast_spec
from tests.s3_store import S3Store


def _png(kind: int, index: int) -> bytes:
    pixels = np.random.default_rng([kind, index]).integers(0, 40, (16, 16, 3), dtype=np.uint8)
    if kind == 0:
        pixels[4:12, 4:12] = 230
    else:
        pixels[::3] = 230
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_s3_dataset_trains_from_a_cache_that_is_refreshed_only_for_changed_objects(
    tmp_path, s3_store: S3Store, monkeypatch
):
    bucket = s3_store.new_bucket()
    for kind, name in enumerate(("squares", "stripes")):
        for index in range(12):
            s3_store.put(bucket, f"datasets/shapes/{name}/{index:02d}.png", _png(kind, index))
    for key, value in s3_store.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CRUCIBLE_DATA_CACHE", str(tmp_path / "cache"))
    uri = f"s3://{bucket}/datasets/shapes/"

    spec = fast_spec(
        dataset={"source": "imageFolder", "uri": uri, "imageSize": 16},
        hyperparameters={"epochs": 2, "batchSize": 8},
        gates={
            "debug": {"enabled": False},
            "crossValidation": {"enabled": False},
            "overfitting": {"enabled": False},
        },
    )
    result = train(spec, RunContext(name="s3", output_dir=tmp_path / "out", device="cpu"))
    assert result.phase == "Succeeded", result.reason
    assert result.model_dump()["dataset"] == {"badFiles": 0, "downloaded": 24, "reused": 0}
    cached = tmp_path / "cache" / bucket / "datasets" / "shapes"
    assert (cached / "squares" / "00.png").read_bytes() == _png(0, 0)

    again = sync(uri, tmp_path / "cache")
    assert (again.downloaded, again.reused) == (0, 24)

    s3_store.put(bucket, "datasets/shapes/squares/00.png", _png(0, 99))
    changed = sync(uri, tmp_path / "cache")
    assert (changed.downloaded, changed.reused) == (1, 23)
    assert (cached / "squares" / "00.png").read_bytes() == _png(0, 99)
