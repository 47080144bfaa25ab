"""Uploaded image files -> raw RGB pixels at the model's input size.

Images go through the trainer's own decoding and eval transform (`crucible.trainer.imaging`: EXIF
orientation, alpha onto the same background, the resize policy the model card records), so a picture
uploaded here reaches the model as a picture in the training set did.

A JPEG that needs no DCT reduction (smaller than twice the input size) and is RGB or grayscale is
decoded by torchvision's libjpeg-turbo binding instead, straight into [3, H, W]: the same pixels as
Pillow's decode (tested, EXIF orientation included), at about half the CPU (0.22 against 0.42 ms for
a 224-pixel photo), with no PIL image in between to copy out of.
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from crucible.server.errors import InvalidInput, UnsupportedMediaType
from crucible.trainer.imaging import bilinear, load_rgb, resize

ACCEPTED_FORMATS = ("PNG", "JPEG")
# torchvision 0.29 warns on every decode that TorchCodec will take its decoders over. The version is
# pinned, and a torchvision without them leaves every JPEG to Pillow (`_decode_jpeg_directly`).
warnings.filterwarnings(
    "ignore", "The image decoding and encoding capabilities of TorchVision", DeprecationWarning
)
# A decompression bomb (a small file that expands to gigapixels) is refused before it is decoded.
MAX_PIXELS = 64 * 1024 * 1024


def decode_image(data: bytes, filename: str, size: tuple[int, int], policy: str = "stretch") -> np.ndarray:
    """One PNG or JPEG file -> uint8 pixels [3, H, W] at `size` (H, W) by the resize `policy`."""
    if not data:
        raise InvalidInput(f"file {filename!r} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image_format = image.format
            if image_format not in ACCEPTED_FORMATS:
                raise UnsupportedMediaType(
                    f"file {filename!r} is {image_format or 'not an image'}; accepted: PNG, JPEG"
                )
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InvalidInput(
                    f"file {filename!r} is {width}x{height} pixels; the limit is {MAX_PIXELS} pixels"
                )
            pixels = _decode_jpeg_directly(data, image, max(size))
            if pixels is not None and pixels.shape[1:] == size:
                return pixels  # already the input's size: every policy leaves it as it is
            # The trainer's decode step, JPEGs DCT-reduced where the photo is twice the input size or more.
            if pixels is None:
                rgb = load_rgb(image, draft_size=max(size))
            else:
                rgb = Image.fromarray(pixels.transpose(1, 2, 0))
            if rgb.size == (size[1], size[0]):
                pass  # already the input's size: every policy leaves it as it is
            elif policy == "stretch" or size[0] != size[1]:
                rgb = bilinear(rgb, (size[1], size[0]))
            else:
                rgb = resize(rgb, size[0], policy)
    except UnidentifiedImageError:
        raise UnsupportedMediaType(f"file {filename!r} is not an image; accepted: PNG, JPEG") from None
    except (
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as error:
        raise InvalidInput(f"file {filename!r} cannot be decoded: {error}") from None
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def _decode_jpeg_directly(data: bytes, image: Image.Image, draft_size: int) -> np.ndarray | None:
    """An RGB or grayscale JPEG decoded by torchvision into uint8 [3, H, W], EXIF orientation applied;
    None where Pillow's decode step has to do it: other formats and modes (CMYK, PNG's alpha and
    palettes), a photo that `load_rgb` would DCT-reduce, no torchvision."""
    if image.format != "JPEG" or image.mode not in ("RGB", "L"):
        return None
    width, height = image.size
    if min(width // draft_size, height // draft_size) >= 2:
        return None  # Pillow's draft decode reads it at 1/2..1/8 scale: cheaper than any full decode
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:  # no torchvision, or one whose decoders have moved to TorchCodec
        return None
    # A bytearray: torch warns about tensors over read-only buffers. The copy is the file's size.
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        return decode_jpeg(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=True).numpy()
    except RuntimeError as error:  # libjpeg's words ("Image is incomplete or truncated") after a C++ location
        raise OSError(re.sub(r"^.*\.cpp:\d+, ", "", str(error))) from None


def decode_images(
    files: list[tuple[str, bytes]], size: tuple[int, int], policy: str = "stretch"
) -> np.ndarray:
    """Every uploaded file, in order, as one uint8 batch [N, 3, H, W].

    Each picture is written straight into the preallocated batch (one transposing copy from Pillow's
    [H, W, 3]) rather than kept in a list and stacked: about 5% less CPU per image at 224."""
    batch = np.empty((len(files), 3, *size), dtype=np.uint8)
    for index, (name, data) in enumerate(files):
        batch[index] = decode_image(data, name, size, policy)
    return batch
