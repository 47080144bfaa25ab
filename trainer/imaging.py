"""Image files -> RGB pictures at the model's input size, the same way in training and serving.

The server imports this module to apply the eval transform a model card records, so a photo reaches
the model exactly as the photos of its training set did. torchvision is optional here (imported on
first use): without it the resize is Pillow's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
RESIZE_POLICIES = ("stretch", "shorterSideCrop", "letterbox")
# Transparent pixels show what a viewer shows behind them; letterbox bars are black.
BACKGROUND = (255, 255, 255)
LETTERBOX_FILL = (0, 0, 0)
# Mean absolute difference per pixel (uint8 units) allowed between a draft (DCT-reduced) JPEG decode
# and a full decode, both followed by the same resize; measured 0.4-0.5 on photos (docs/data.md).
DRAFT_TOLERANCE = 1.0


def is_candidate_image(path: Path) -> bool:
    """An image file by its name; hidden files and macOS `._*` resource forks are not."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer images (mode I, I;16, ...) scaled to 8 bits, not clipped at 255."""
    pixels = np.asarray(image)
    if pixels.dtype == np.uint8:
        return image.convert("L")
    top = 65535 if image.mode.startswith("I;16") or pixels.max() > 255 else 255
    scaled = np.clip(pixels.astype(np.float64) * (255.0 / top), 0, 255).round().astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def to_rgb(
    image: Image.Image, background: tuple[int, int, int] = BACKGROUND, in_place: bool = False
) -> Image.Image:
    """Any PIL image as RGB: EXIF orientation applied, alpha composited onto `background`, palette,
    16-bit, float, grayscale and CMYK images converted. `in_place` lets the orientation be applied to
    `image` itself, and returns `image` when nothing else is to be done: no copy of the pixels, for
    the caller that decoded it and owns it (a copy of a 224-pixel photo is a tenth of its decoding)."""
    if in_place:
        ImageOps.exif_transpose(image, in_place=True)
    else:
        image = ImageOps.exif_transpose(image)  # a copy, even when nothing turns
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8bit(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def load_rgb(image: Image.Image, draft_size: int | None = None) -> Image.Image:
    """Decode an opened image into an RGB picture: the one decode step of training and serving.

    With `draft_size`, a JPEG at least twice that size on both sides is decoded in the DCT domain at
    1/2, 1/4 or 1/8 scale, the smallest scale that keeps both sides >= `draft_size` (2-7x less CPU
    for 1-12 MP photos at 224). The resize that follows then sees a smaller picture: the pixels
    differ from a full decode's by about 0.5 (mean abs, uint8 units) on photos, well within
    `DRAFT_TOLERANCE`. EXIF orientation is metadata, so it still applies after a draft decode."""
    if draft_size and image.format == "JPEG":
        image.draft("RGB", (draft_size, draft_size))
    image.load()
    return to_rgb(image, in_place=True)


def open_rgb(source: str | Path | BinaryIO, draft_size: int | None = None) -> Image.Image:
    """Decode a file fully into an RGB picture (raises OSError and friends for a bad file); see
    `load_rgb` for `draft_size`."""
    with Image.open(source) as image:
        return load_rgb(image, draft_size)


def bilinear(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Antialiased bilinear resize of an RGB picture to `size` (width, height).

    torchvision's uint8 antialiased kernel is a port of Pillow's BILINEAR filter: the same pixels
    within 1 (uint8), about half the CPU of Pillow's (benchmarks/decode.py). Pillow's is the fallback
    where torchvision is not installed."""
    if image.mode != "RGB":
        return image.resize(size, Image.BILINEAR)
    try:
        import torch
        from torchvision.transforms.v2.functional import resize as resize_tensor
    except ImportError:
        return image.resize(size, Image.BILINEAR)
    # [3, H, W] viewed on [H, W, 3]: torchvision keeps it channels-last, so no repacking either way.
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    out = resize_tensor(pixels, [size[1], size[0]], antialias=True)
    return Image.fromarray(out.permute(1, 2, 0).numpy())


def resize(image: Image.Image, size: int, policy: str = "stretch") -> Image.Image:
    """The eval transform: `size` x `size` by a resize policy (see `RESIZE_POLICIES`).

    stretch: both sides to `size` (aspect ratio lost); shorterSideCrop: the shorter side to `size`,
    then the centre square; letterbox: the longer side to `size`, bars on the shorter one."""
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"resize: {policy!r} is not allowed; allowed values: {', '.join(RESIZE_POLICIES)}")
    width, height = image.size
    if policy == "stretch" or width == height:
        return image if image.size == (size, size) else bilinear(image, (size, size))
    if policy == "shorterSideCrop":
        scale = size / min(width, height)
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        resized = bilinear(image, new)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        return resized.crop((left, top, left + size, top + size))
    scale = size / max(width, height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    canvas = Image.new("RGB", (size, size), LETTERBOX_FILL)
    canvas.paste(bilinear(image, new), ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


def channels_first(image: Image.Image) -> np.ndarray:
    """uint8 [3, H, W] pixels of an RGB picture."""
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
