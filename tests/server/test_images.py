"""Uploaded files -> pixels at the model's input size, or a clear refusal."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from crucible.server import images
from crucible.server.errors import InvalidInput, UnsupportedMediaType
from crucible.trainer.imaging import bilinear, channels_first, resize


def encoded(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def test_a_png_is_resized_bilinearly_to_the_input_size_as_channels_first_rgb():
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 20, 3), dtype=np.uint8))
    pixels = images.decode_image(encoded(picture, "PNG"), "a.png", (16, 12))
    assert (pixels.shape, pixels.dtype) == ((3, 16, 12), np.uint8)
    np.testing.assert_array_equal(pixels, channels_first(bilinear(picture, (12, 16))))
    pillow = np.asarray(picture.resize((12, 16), Image.BILINEAR)).transpose(2, 0, 1).astype(np.int16)
    assert np.abs(pixels.astype(np.int16) - pillow).max() <= 1, "Pillow's bilinear filter, within 1"


def test_grayscale_and_transparent_images_become_rgb_on_the_training_background():
    gray = images.decode_image(encoded(Image.new("L", (8, 8), 200), "PNG"), "g.png", (8, 8))
    assert gray.shape == (3, 8, 8) and (gray == 200).all()
    clear = images.decode_image(encoded(Image.new("RGBA", (8, 8), (10, 20, 30, 0)), "PNG"), "t.png", (8, 8))
    assert clear[:, 0, 0].tolist() == [255, 255, 255]
    opaque = images.decode_image(
        encoded(Image.new("RGBA", (8, 8), (10, 20, 30, 255)), "PNG"), "o.png", (8, 8)
    )
    assert opaque[:, 0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize("policy", ["shorterSideCrop", "letterbox"])
def test_the_card_resize_policy_is_the_trainer_eval_transform(policy):
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 255, (30, 50, 3), dtype=np.uint8))
    pixels = images.decode_image(encoded(photo, "PNG"), "p.png", (16, 16), policy)
    np.testing.assert_array_equal(pixels, channels_first(resize(photo, 16, policy)))


def test_exif_orientation_is_applied():
    tall = Image.new("RGB", (20, 40), "white")
    tall.paste((255, 0, 0), (0, 0, 20, 10))  # red band at the top
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: a viewer turns it 90 degrees clockwise
    buffer = io.BytesIO()
    tall.save(buffer, format="JPEG", exif=exif)
    wide = images.decode_image(buffer.getvalue(), "r.jpg", (20, 40))
    assert wide[0, 10, 35] > 200 and wide[1, 10, 35] < 80, "the red band turned to the right side"


def test_a_jpeg_is_accepted():
    assert images.decode_image(
        encoded(Image.new("RGB", (40, 40), "red"), "JPEG"), "r.jpg", (16, 16)
    ).shape == (3, 16, 16)


def test_several_files_make_one_batch_in_order():
    files = [(f"{v}.png", encoded(Image.new("L", (4, 4), v), "PNG")) for v in (10, 20, 30)]
    batch = images.decode_images(files, (4, 4))
    assert batch.shape == (3, 3, 4, 4)
    assert batch[:, 0, 0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"just some text", UnsupportedMediaType, "file 'f' is not an image; accepted: PNG, JPEG"),
        (
            encoded(Image.new("RGB", (4, 4)), "BMP"),
            UnsupportedMediaType,
            "file 'f' is BMP; accepted: PNG, JPEG",
        ),
        (b"", InvalidInput, "file 'f' is empty"),
    ],
)
def test_files_that_are_not_png_or_jpeg_are_refused(data, error, message):
    with pytest.raises(error) as refused:
        images.decode_image(data, "f", (8, 8))
    assert refused.value.message == message


def test_a_truncated_png_is_refused_as_undecodable():
    truncated = encoded(Image.new("RGB", (64, 64), "blue"), "PNG")[:60]
    with pytest.raises(InvalidInput) as refused:
        images.decode_image(truncated, "cut.png", (8, 8))
    assert refused.value.message.startswith("file 'cut.png' cannot be decoded: ")


def test_a_decompression_bomb_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(InvalidInput) as refused:
        images.decode_image(encoded(Image.new("L", (11, 10)), "PNG"), "bomb.png", (8, 8))
    assert refused.value.message == "file 'bomb.png' is 11x10 pixels; the limit is 100 pixels"


@pytest.mark.parametrize("policy", ["stretch", "shorterSideCrop", "letterbox"])
def test_a_picture_already_at_the_input_size_reaches_the_model_untouched(policy):
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    pixels = images.decode_image(encoded(picture, "PNG"), "a.png", (16, 16), policy)
    np.testing.assert_array_equal(pixels, channels_first(picture))


def photo_jpeg(size: tuple[int, int], mode: str = "RGB", orientation: int = 1, **options) -> bytes:
    """A photo-like JPEG (smooth gradients, noise, edges), `size` (width, height) as stored."""
    rows, columns = np.mgrid[0 : size[1], 0 : size[0]]
    noise = np.random.default_rng(2).normal(0, 12, (size[1], size[0], 3))
    pixels = np.stack([rows * 0.8, columns * 0.6, (rows + columns) * 0.4], axis=-1) + noise
    pixels[size[1] // 3 : size[1] // 2, size[0] // 4 : size[0] // 2] = (200, 40, 30)
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90, exif=exif, **options)
    return buffer.getvalue()


def pillow_decode(data: bytes, size: tuple[int, int], policy: str = "stretch") -> np.ndarray:
    """The trainer's decode step and eval transform, by Pillow alone."""
    from crucible.trainer.imaging import open_rgb

    rgb = open_rgb(io.BytesIO(data), draft_size=max(size))
    if rgb.size != (size[1], size[0]):
        rgb = bilinear(rgb, (size[1], size[0])) if policy == "stretch" else resize(rgb, size[0], policy)
    return channels_first(rgb)


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("RGB", {"subsampling": 0}),
        ("RGB", {"subsampling": 2}),
        ("RGB", {"subsampling": 1, "progressive": True}),
        ("L", {}),
    ],
)
def test_jpegs_decode_to_the_trainers_pixels(mode, options):
    data = photo_jpeg((64, 64), mode, **options)
    assert images._decode_jpeg_directly(data, Image.open(io.BytesIO(data)), 64) is not None, (
        "decoded directly"
    )
    np.testing.assert_array_equal(images.decode_image(data, "p.jpg", (64, 64)), pillow_decode(data, (64, 64)))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpegs_turn_by_their_exif_orientation_as_in_training(orientation):
    data = photo_jpeg((48, 32), orientation=orientation)
    size = (48, 32) if orientation >= 5 else (32, 48)  # 5..8 turn a quarter: height and width swap
    np.testing.assert_array_equal(images.decode_image(data, "p.jpg", size), pillow_decode(data, size))


@pytest.mark.parametrize("policy", ["stretch", "shorterSideCrop", "letterbox"])
def test_a_jpeg_of_another_size_is_resized_as_in_training(policy):
    data = photo_jpeg((50, 40))
    np.testing.assert_array_equal(
        images.decode_image(data, "p.jpg", (32, 32), policy), pillow_decode(data, (32, 32), policy)
    )


def test_a_large_jpeg_is_left_to_pillows_reduced_decode():
    data = photo_jpeg((200, 140))
    assert images._decode_jpeg_directly(data, Image.open(io.BytesIO(data)), 64) is None
    np.testing.assert_array_equal(images.decode_image(data, "p.jpg", (64, 64)), pillow_decode(data, (64, 64)))


def test_a_cmyk_jpeg_is_left_to_pillow():
    data = encoded(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG")
    assert images._decode_jpeg_directly(data, Image.open(io.BytesIO(data)), 16) is None
    assert images.decode_image(data, "c.jpg", (16, 16))[:, 0, 0].tolist()[0] > 200, "red stays red"


def test_a_truncated_jpeg_is_refused_as_undecodable():
    data = photo_jpeg((64, 64))
    with pytest.raises(InvalidInput) as refused:
        images.decode_image(data[: len(data) // 2], "cut.jpg", (64, 64))
    assert refused.value.message.startswith("file 'cut.jpg' cannot be decoded: ")
    assert ".cpp" not in refused.value.message, "libjpeg's words, not a C++ source location"
