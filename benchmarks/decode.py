"""Decoding a photo to the model's input: CPU milliseconds per image, by decoder, against a full decode.

Measures process CPU time (not wall time: on a shared machine wall time counts other people's work)
for each way of turning an encoded photo into uint8 pixels at the training size with the
`shorterSideCrop` eval transform, and prints the ratio to the baseline in the same run:

- PIL full:    full-size decode, then Pillow's BILINEAR resize (the behaviour before this benchmark)
- PIL draft:   JPEGs decoded at 1/2, 1/4 or 1/8 scale (`Image.draft`) where the photo is at least
               twice the size needed, then Pillow's resize
- crucible:    what training and serving run: `imaging.open_rgb` with the draft size, then
               `imaging.resize` (torchvision's uint8 antialiased port of Pillow's filter)
- tv.io:       `torchvision.io.decode_image` (full decode) + torchvision's antialiased resize + crop

It also prints the mean absolute difference (uint8 units) of each path against the baseline's pixels,
the figure the tolerance in tests/trainer/test_decode.py bounds.

    .venv/bin/python benchmarks/decode.py [--size 224] [--repeat 20]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image

from crucible.trainer.imaging import channels_first, open_rgb, resize


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like picture: smooth colour gradients, a few filled shapes with soft edges, sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.empty((height, width, 3), dtype=np.float32)
    for channel in range(3):
        fx, fy, phase = rng.uniform(0.5, 3), rng.uniform(0.5, 3), rng.uniform(0, 6.3)
        wave = np.sin(fx * x / width * 3.14 + phase) * np.cos(fy * y / height * 3.14)
        pixels[..., channel] = 128 + 90 * wave
    for _ in range(12):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.03, 0.2) * min(width, height)
        inside = np.clip((radius - np.hypot(x - cx, y - cy)) / 2, 0, 1)[..., None]
        pixels = pixels * (1 - inside) + rng.uniform(0, 255, 3).astype(np.float32) * inside
    pixels += rng.normal(0, 6, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def encoded(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **({"quality": 90} if image_format == "JPEG" else {}))
    return buffer.getvalue()


def pillow_crop(image: Image.Image, size: int) -> np.ndarray:
    """shorterSideCrop with Pillow's own resize, rounding as `imaging.resize` does."""
    scale = size / min(image.size)
    new = (max(size, round(image.size[0] * scale)), max(size, round(image.size[1] * scale)))
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return channels_first(image.resize(new, Image.BILINEAR).crop((left, top, left + size, top + size)))


def pil_full(data: bytes, size: int) -> np.ndarray:
    return pillow_crop(open_rgb(io.BytesIO(data)), size)


def pil_draft(data: bytes, size: int) -> np.ndarray:
    return pillow_crop(open_rgb(io.BytesIO(data), draft_size=size), size)


def crucible(data: bytes, size: int) -> np.ndarray:
    return channels_first(resize(open_rgb(io.BytesIO(data), draft_size=size), size, "shorterSideCrop"))


def torchvision_path():
    """torchvision.io's decoder + resize, or None where torchvision.io cannot decode here."""
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_image
        from torchvision.transforms.v2 import functional
    except ImportError:
        return None
    torch.set_num_threads(1)  # like the PIL paths: one image on one core

    def decode(data: bytes, size: int) -> np.ndarray:
        raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        pixels = decode_image(raw, mode=ImageReadMode.RGB, apply_exif_orientation=True)
        # The shorter side to `size` and the centre square, with the eval transform's rounding.
        height, width = pixels.shape[1:]
        scale = size / min(width, height)
        new = (max(size, round(height * scale)), max(size, round(width * scale)))
        pixels = functional.resize(pixels, list(new), antialias=True)
        top, left = (new[0] - size) // 2, (new[1] - size) // 2
        return pixels[:, top : top + size, left : left + size].numpy()

    return decode


def cpu_ms(decode, data: bytes, size: int, repeat: int) -> float:
    decode(data, size)  # warm-up: imports, allocator
    start = time.process_time()
    for _ in range(repeat):
        decode(data, size)
    return (time.process_time() - start) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    paths = {"PIL full": pil_full, "PIL draft": pil_draft, "crucible": crucible}
    tv = torchvision_path()
    if tv is not None:
        paths["tv.io"] = tv
    cases = [(f"JPEG {w}x{h}", w, h, "JPEG") for w, h in ((320, 240), (1024, 768), (3000, 2000))]
    cases.append(("PNG 1024x768", 1024, 768, "PNG"))
    print(f"CPU ms per image to uint8 [3, {args.size}, {args.size}] (shorterSideCrop), process CPU time;")
    print("ratio = baseline ms / path ms; mad = mean abs difference to the baseline's pixels, uint8 units")
    header = f"{'image':<15}" + "".join(f"{name:>29}" for name in paths)
    print(header)
    for label, width, height, image_format in cases:
        data = encoded(photo(width, height), image_format)
        repeat = max(3, args.repeat * 320 * 240 // (width * height)) if width > 1024 else args.repeat
        baseline_pixels = pil_full(data, args.size).astype(np.int16)
        row, baseline = f"{label:<15}", None
        for decode in paths.values():
            ms = cpu_ms(decode, data, args.size, repeat)
            baseline = baseline or ms
            mad = float(np.abs(decode(data, args.size).astype(np.int16) - baseline_pixels).mean())
            row += f"{ms:>8.2f} ms {baseline / ms:>5.2f}x mad {mad:>5.2f}"
        print(row)


if __name__ == "__main__":
    main()
