"""Reduced-size JPEG decoding (`imaging.load_rgb` with a draft size) and torchvision's resize kernel:
what they change in the pixels the model sees, bounded by `DRAFT_TOLERANCE`, and what they leave alone."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from PIL import Image

from crucible.api.trainingrun import AugmentationSpec
from crucible.server.images import decode_image
from crucible.trainer import imaging
from crucible.trainer.data import FolderSource
from crucible.trainer.imaging import (
    DRAFT_TOLERANCE,
    RESIZE_POLICIES,
    bilinear,
    channels_first,
    open_rgb,
    resize,
    to_rgb,
)
from crucible.trainer.pipeline import Transform

ORIENTATION = 0x0112


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Photo-like: smooth colour gradients, soft-edged discs, sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.stack(
        [
            128 + 90 * np.sin((c + 1) * x / width * 3.1 + c) * np.cos((3 - c) * y / height * 3.1)
            for c in range(3)
        ],
        axis=-1,
    )
    for _ in range(8):
        cx, cy, radius = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.05, 0.2) * height
        box = np.s_[
            max(0, int(cy - radius)) : int(cy + radius) + 2, max(0, int(cx - radius)) : int(cx + radius) + 2
        ]
        inside = np.clip((radius - np.hypot(x[box] - cx, y[box] - cy)) / 2, 0, 1)[..., None]
        pixels[box] = pixels[box] * (1 - inside) + rng.uniform(0, 255, 3).astype(np.float32) * inside
    pixels += rng.normal(0, 6, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def _pixels(data: bytes, size: int, policy: str, draft: bool) -> np.ndarray:
    picture = open_rgb(io.BytesIO(data), draft_size=size if draft else None)
    return channels_first(resize(picture, size, policy)).astype(np.int16)


def _pillow_resize(monkeypatch):
    """The resize as it was before torchvision's kernel: Pillow's BILINEAR."""
    monkeypatch.setattr(imaging, "bilinear", lambda image, size: image.resize(size, Image.BILINEAR))


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    return {"1024x768": _jpeg(_photo(1024, 768)), "2400x1600": _jpeg(_photo(2400, 1600, seed=1))}


@pytest.mark.parametrize("policy", RESIZE_POLICIES)
def test_a_draft_decode_stays_within_the_tolerance_of_a_full_decode(photos, policy):
    for data in photos.values():
        assert open_rgb(io.BytesIO(data), draft_size=224).size[0] < Image.open(io.BytesIO(data)).size[0]
        difference = np.abs(_pixels(data, 224, policy, True) - _pixels(data, 224, policy, False))
        assert difference.mean() <= DRAFT_TOLERANCE, f"mean abs difference {difference.mean():.2f}"


def test_a_draft_decode_keeps_both_sides_at_least_the_size_needed():
    data = _jpeg(_photo(900, 440))  # halving the short side would give 220 < 224: decoded at full size
    assert open_rgb(io.BytesIO(data), draft_size=224).size == (900, 440)
    assert open_rgb(io.BytesIO(_jpeg(_photo(900, 460))), draft_size=224).size == (450, 230)
    assert open_rgb(io.BytesIO(_jpeg(_photo(960, 480))), draft_size=224).size == (480, 240)


def test_a_small_photo_is_decoded_bit_identically():
    data = _jpeg(_photo(320, 240))
    assert np.array_equal(
        _pixels(data, 224, "shorterSideCrop", True), _pixels(data, 224, "shorterSideCrop", False)
    )


def test_exif_orientation_applies_after_a_draft_decode():
    upright = _photo(480, 960)
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored on its side; a viewer turns it upright
    data = _jpeg(upright.rotate(90, expand=True), exif=exif)
    drafted = open_rgb(io.BytesIO(data), draft_size=224)
    assert drafted.size == (240, 480), "a quarter of the pixels, upright"
    full = open_rgb(io.BytesIO(data))
    assert full.size == (480, 960)
    difference = np.abs(_pixels(data, 224, "stretch", True) - _pixels(data, 224, "stretch", False))
    assert difference.mean() <= DRAFT_TOLERANCE


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_jpegs_decode_reduced_to_rgb(mode):
    data = _jpeg(_photo(1024, 768).convert(mode))
    drafted = open_rgb(io.BytesIO(data), draft_size=224)
    assert drafted.mode == "RGB" and drafted.size == (512, 384)
    difference = np.abs(
        _pixels(data, 224, "shorterSideCrop", True) - _pixels(data, 224, "shorterSideCrop", False)
    )
    assert difference.mean() <= DRAFT_TOLERANCE


@pytest.mark.parametrize("policy", RESIZE_POLICIES)
def test_served_photos_stay_within_the_tolerance_of_the_full_decode_and_pillow_resize(
    photos, policy, monkeypatch
):
    served = {
        name: decode_image(data, name, (224, 224), policy).astype(np.int16) for name, data in photos.items()
    }
    _pillow_resize(monkeypatch)
    for name, data in photos.items():
        difference = np.abs(served[name] - _pixels(data, 224, policy, draft=False))
        assert difference.mean() <= DRAFT_TOLERANCE, f"{name}: mean abs difference {difference.mean():.2f}"


def test_torchvisions_resize_kernel_is_pillows_within_one():
    picture = Image.fromarray(np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8))
    for size in [(299, 224), (224, 224), (16, 12), (640, 480), (321, 240)]:
        ours = np.asarray(bilinear(picture, size)).astype(np.int16)
        assert np.abs(ours - np.asarray(picture.resize(size, Image.BILINEAR))).max() <= 1, size


def test_without_torchvision_the_resize_is_pillows(monkeypatch):
    picture = _photo(320, 240)
    monkeypatch.setitem(sys.modules, "torchvision.transforms.v2.functional", None)
    assert np.array_equal(
        np.asarray(bilinear(picture, (299, 224))), np.asarray(picture.resize((299, 224), Image.BILINEAR))
    )


def test_png_decoding_is_unchanged_bit_for_bit(monkeypatch):
    buffer = io.BytesIO()
    _photo(1024, 768).save(buffer, "PNG")
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as image:  # the decode before reduced-size JPEG decoding
        image.load()
        decoded = to_rgb(image)
    assert np.array_equal(np.asarray(open_rgb(io.BytesIO(data), draft_size=224)), np.asarray(decoded))
    served = decode_image(data, "p.png", (224, 224), "shorterSideCrop")
    assert np.array_equal(served, channels_first(resize(decoded, 224, "shorterSideCrop")))
    _pillow_resize(monkeypatch)  # against the Pillow resize of before: torchvision's kernel, within 1
    before = channels_first(resize(decoded, 224, "shorterSideCrop")).astype(np.int16)
    assert np.abs(served.astype(np.int16) - before).max() <= 1


@pytest.mark.parametrize("policy", RESIZE_POLICIES)
def test_training_and_serving_see_the_same_pixels(tmp_path, photos, policy):
    (tmp_path / "photo.jpg").write_bytes(photos["2400x1600"])
    transform = Transform(224, policy)
    trained = transform(FolderSource(tmp_path, ["photo.jpg"], [b""]).read(0, transform.draft_size), seed=0)
    served = decode_image(photos["2400x1600"], "photo.jpg", (224, 224), policy)
    assert np.array_equal(trained, served)


def test_a_random_resized_crop_decodes_the_full_photo():
    assert Transform(224, augmentation=AugmentationSpec(random_resized_crop=True)).draft_size is None
    assert Transform(224, augmentation=AugmentationSpec(rotation=10)).draft_size == 224


def test_decoding_an_upright_rgb_picture_makes_no_copy_of_its_pixels():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="PNG")
    with Image.open(buffer) as image:
        image.load()
        assert to_rgb(image, in_place=True) is image
        assert to_rgb(image) is not image  # the caller's picture is left alone unless it says so
