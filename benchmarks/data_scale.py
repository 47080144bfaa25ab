"""Data at the scale users bring: the trainer vs a bare torchvision ImageFolder + DataLoader loop.

Generates (once, cached under --data-dir, outside the repository) a folder of photo-like JPEGs,
320x240, in 10 classes, then trains one epoch of mobilenet_v3_small at 224 twice, each in its own
process: with `crucible-train` (gates off, shorterSideCrop, horizontal flip) and with the loop a
user would write (ImageFolder, Resize + CenterCrop + RandomHorizontalFlip + ToTensor + Normalize,
DataLoader with the same workers and batch size). Peak RSS is the sum over the process and its
DataLoader workers, sampled every 0.1 s; so is PSS, which counts pages the forked workers share
with the trainer once instead of once per process. Targets: the trainer's peak RSS <= 2.5 GiB and
<= 1.2x the bare loop's; its training throughput >= 0.9x the bare loop's.

    python benchmarks/data_scale.py [--images 20000] [--batch-size 64] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = 10
WIDTH, HEIGHT = 320, 240
GIB = 1024**3


def picture(label: int, index: int) -> Image.Image:
    """A photo-like picture: a graded sky, noise, and one object whose shape and colour tell the class."""
    rng = np.random.default_rng([label, index])
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    fade = np.linspace(0.0, 1.0, HEIGHT)[:, None, None]
    background = top * (1 - fade) + bottom * fade
    pixels = np.broadcast_to(background, (HEIGHT, WIDTH, 3)) + rng.normal(0, 12, (HEIGHT, WIDTH, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    hue = np.array([(label * 97) % 256, (label * 53 + 80) % 256, (label * 29 + 160) % 256])
    colour = tuple(int(v) for v in np.clip(hue + rng.integers(-30, 30, 3), 0, 255))
    size = int(rng.integers(50, 110))
    x, y = int(rng.integers(0, WIDTH - size)), int(rng.integers(0, HEIGHT - size))
    shape = label % 5
    if shape == 0:
        draw.ellipse((x, y, x + size, y + size), fill=colour)
    elif shape == 1:
        draw.rectangle((x, y, x + size, y + size // 2), fill=colour)
    elif shape == 2:
        draw.polygon([(x, y + size), (x + size // 2, y), (x + size, y + size)], fill=colour)
    elif shape == 3:
        for step in range(0, size, 8):
            draw.line((x, y + step, x + size, y + step), fill=colour, width=3)
    else:
        draw.ellipse((x, y, x + size, y + size), outline=colour, width=10)
    if label >= 5:  # classes 5-9 repeat the shapes with a second object, a harder task
        draw.rectangle((WIDTH - x - 30, HEIGHT - y - 30, WIDTH - x, HEIGHT - y), fill=colour)
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.2))))


def _write(job: tuple[Path, int, int]) -> None:
    path, label, index = job
    picture(label, index).save(path, quality=90)


def dataset(directory: Path, count: int, workers: int) -> Path:
    """An image folder of `count` JPEGs (count / 10 per class), generated once and then reused."""
    root = directory / f"photos-{count}"
    jobs = []
    for index in range(count):
        label = index % CLASSES
        path = root / f"class{label}" / f"{index // CLASSES:05d}.jpg"
        if not path.is_file():
            jobs.append((path, label, index // CLASSES))
    if jobs:
        for label in range(CLASSES):
            (root / f"class{label}").mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with Pool(workers) as pool:
            pool.map(_write, jobs, chunksize=64)
        print(f"generated {len(jobs)} JPEGs in {root} in {time.perf_counter() - started:.0f} s")
    else:
        print(f"reusing {count} JPEGs in {root}")
    return root


def _tree_memory(root_pid: int) -> tuple[int, int]:
    """Resident bytes (RSS) and proportional set size (PSS: shared pages split between the processes
    that share them) of a process and all its descendants (DataLoader workers included)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    rss, pss, stack = 0, 0, [root_pid]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, pss


def measured(command: list[str]) -> tuple[int, int, float, str]:
    """Run `command`; its peak tree RSS and PSS, wall seconds and stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True)
        peak_rss = peak_pss = 0
        while process.poll() is None:
            rss, pss = _tree_memory(process.pid)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(0.1)
        out.seek(0)
        text = out.read()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed ({process.returncode}):\n{text[-3000:]}")
    return peak_rss, peak_pss, time.perf_counter() - started, text


def bare_loop(root: Path, batch_size: int, workers: int) -> None:
    """The loop a user would write with torchvision; prints its training throughput as JSON."""
    import torch
    import torchvision
    from torchvision import transforms

    from crucible.resources import available_cpus

    torch.set_num_threads(available_cpus())
    torch.manual_seed(42)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    transform = transforms.Compose(
        [
            transforms.Resize(224),
            transforms.CenterCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        ]
    )
    data = torchvision.datasets.ImageFolder(str(root), transform)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
    )
    model = torchvision.models.mobilenet_v3_small(num_classes=len(data.classes)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    seen, started = 0, time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
    seconds = time.perf_counter() - started
    print(json.dumps({"images": seen, "seconds": seconds, "imagesPerSecond": seen / seconds}))


def trainer_spec(root: Path, batch_size: int, images: int) -> dict:
    off = {"enabled": False}
    held_out = max(0.02, 2 * CLASSES / images)  # a small held-out split, two images a class at least
    return {
        "seed": 42,
        "dataset": {"source": "imageFolder", "uri": str(root), "imageSize": 224, "resize": "shorterSideCrop",
                    "testFraction": held_out},
        "model": {"architecture": "mobilenet_v3_small"},
        "hyperparameters": {"epochs": 1, "batchSize": batch_size, "augmentation": {"horizontalFlip": True}},
        "gates": {"debug": off, "crossValidation": off, "baseline": off, "overfitting": off, "heldOut": off},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="JPEGs in the folder (10 classes).")
    parser.add_argument("--batch-size", type=int, default=64)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "crucible-benchmarks"
    parser.add_argument("--data-dir", type=Path, default=cache, help=f"Where the JPEGs are cached ({cache}).")
    parser.add_argument("--bare", type=Path, help=argparse.SUPPRESS)  # the bare loop's own process
    args = parser.parse_args()

    from crucible.resources import available_cpus

    workers = available_cpus()
    if args.bare:
        bare_loop(args.bare, args.batch_size, workers)
        return
    root = dataset(args.data_dir, args.images, workers)
    print(f"{args.images} JPEGs {WIDTH}x{HEIGHT}, mobilenet_v3_small at 224, batch {args.batch_size}, "
          f"{workers} DataLoader workers, 1 epoch")  # fmt: skip

    with tempfile.TemporaryDirectory() as scratch:
        spec = Path(scratch) / "spec.json"
        spec.write_text(json.dumps(trainer_spec(root, args.batch_size, args.images)))
        output = Path(scratch) / "out"
        command = [sys.executable, "-m", "crucible.trainer.cli", "--spec", str(spec), "--output", str(output)]
        ours_rss, ours_pss, ours_wall, _ = measured([*command, "--json"])
        metrics = json.loads((output / "result.json").read_text())["metrics"]
    ours_speed = metrics["trainImagesPerSecond"]
    bare_rss, bare_pss, bare_wall, bare_out = measured([sys.executable, __file__, "--bare", str(root),
                                              "--batch-size", str(args.batch_size)])  # fmt: skip
    bare_speed = json.loads(bare_out.strip().splitlines()[-1])["imagesPerSecond"]

    print(f"{'':22}{'peak RSS':>12}{'peak PSS':>12}{'train img/s':>14}{'wall s':>9}")
    for name, rss, pss, speed, wall in (
        ("crucible trainer", ours_rss, ours_pss, ours_speed, ours_wall),
        ("bare ImageFolder loop", bare_rss, bare_pss, bare_speed, bare_wall),
    ):
        print(f"{name:22}{rss / GIB:8.2f} GiB{pss / GIB:8.2f} GiB{speed:14.1f}{wall:9.0f}")
    print(
        f"trainer peak RSS        {ours_rss / GIB:6.2f} GiB   (target <= 2.5 GiB; PSS {ours_pss / GIB:.2f})"
    )
    print(
        f"RSS ratio trainer/bare  {ours_rss / bare_rss:6.2f}       "
        f"(target <= 1.2; PSS {ours_pss / bare_pss:.2f})"
    )
    print(f"throughput ratio        {ours_speed / bare_speed:6.2f}       (target >= 0.9)")
    print("(RSS sums each page once per process that maps it, and every DataLoader worker maps PyTorch, "
          "about 0.5 GiB; PSS counts each page once, as a pod's memory limit does)")  # fmt: skip
    print("(the trainer's wall time also covers its file check, normalization sample, held-out and final "
          "evaluation; throughput compares the training epochs alone)")  # fmt: skip


if __name__ == "__main__":
    main()
