"""Image folders as users bring them: rotated photos, transparency, 16-bit and palette files, macOS
leftovers, a corrupt file, and folders that are not classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from crucible.trainer.cli import main as crucible_train
from crucible.trainer.imaging import open_rgb, resize
from tests.conftest import FAST_SPEC

ORIENTATION = 0x0112


def _picture(kind: int, rng: np.random.Generator, size: tuple[int, int] = (24, 24)) -> Image.Image:
    """A bright square (kind 0) or bright stripes (kind 1) on dark noise."""
    pixels = rng.integers(0, 40, (size[1], size[0], 3), dtype=np.uint8)
    if kind == 0:
        pixels[6:18, 6:18] = 230
    else:
        pixels[::4] = 230
    return Image.fromarray(pixels)


def _awkward_folder(root):
    """Two classes of ordinary PNGs, plus every kind of file a real photo folder holds."""
    rng = np.random.default_rng(0)
    for kind, name in enumerate(("squares", "stripes")):
        (root / name).mkdir(parents=True)
        for i in range(10):
            _picture(kind, rng).save(root / name / f"{i}.png")
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored on its side; a viewer turns it upright
    _picture(0, rng).rotate(90).save(root / "squares" / "rotated.jpg", exif=exif)
    rgba = _picture(0, rng).convert("RGBA")
    rgba.putalpha(200)
    rgba.save(root / "squares" / "transparent.png")
    sixteen = (np.asarray(_picture(1, rng).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(sixteen).save(root / "stripes" / "sixteen-bit.png")
    _picture(1, rng).convert("P", palette=Image.ADAPTIVE).save(root / "stripes" / "palette.gif")
    (root / "stripes" / "._palette.gif").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (root / "squares" / ".hidden.png").write_bytes(b"not looked at")
    (root / "squares" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (root / "thumbnails").mkdir()
    _picture(0, rng).save(root / "thumbnails" / "0.png")
    return root


def _spec_file(tmp_path, root, **dataset):
    spec = {
        **FAST_SPEC,
        "dataset": {
            "source": "imageFolder",
            "uri": str(root),
            "imageSize": 16,
            "classes": ["squares", "stripes"],
            **dataset,
        },
        "hyperparameters": {"epochs": 2, "batchSize": 8},
        "gates": {
            "debug": {"enabled": False},
            "crossValidation": {"enabled": False},
            "overfitting": {"enabled": False},
            "heldOut": {"enabled": False},
        },
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_awkward_files_train_when_bad_files_are_allowed_and_are_counted(tmp_path, capsys):
    root = _awkward_folder(tmp_path / "photos")
    code = crucible_train(
        ["--spec", _spec_file(tmp_path, root, maxBadFiles=1), "--output", str(tmp_path / "out")]
    )
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert code == 0 and result["phase"] == "Succeeded", result["reason"]
    assert result["dataset"]["badFiles"] == 1
    assert result["dataset"]["badFileExamples"] == ["squares/broken.jpg"]
    assert result["dataset"]["ignoredFolders"] == {"count": 1, "names": ["thumbnails"]}
    metrics = result["metrics"]
    # 20 ordinary files and 4 awkward ones, in the training, validation and held-out splits.
    assert metrics["trainImages"] + metrics["validationImages"] + metrics["testImages"] == 24
    log = capsys.readouterr().out
    assert (
        "skipped 1 unreadable file(s)" in log
        and "ignored 1 folder(s) not in spec.dataset.classes: thumbnails" in log
    )


def test_a_corrupt_file_fails_the_run_by_default_naming_it(tmp_path, capsys):
    root = _awkward_folder(tmp_path / "photos")
    code = crucible_train(["--spec", _spec_file(tmp_path, root), "--output", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert code == 2 and result["phase"] == "Failed"
    assert result["reason"].startswith("spec.dataset.maxBadFiles: 1 unreadable image file(s)")
    assert "squares/broken.jpg" in result["reason"] and "more than the 0 allowed" in result["reason"]
    assert "broken.jpg" in capsys.readouterr().err


def test_decoding_applies_exif_alpha_16_bit_and_palette_like_a_viewer(tmp_path):
    root = _awkward_folder(tmp_path / "photos")
    rotated = open_rgb(root / "squares" / "rotated.jpg")
    assert rotated.size == (24, 24) and rotated.mode == "RGB"
    tall = Image.new("RGB", (10, 30), "white")
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    tall.save(tmp_path / "tall.jpg", exif=exif)
    assert open_rgb(tmp_path / "tall.jpg").size == (30, 10), "EXIF orientation applied"
    sixteen = np.asarray(open_rgb(root / "stripes" / "sixteen-bit.png"))
    assert sixteen.max() >= 225 and sixteen.min() < 50, "16-bit scaled to 8 bits, not clipped to white"
    clear = Image.new("RGBA", (4, 4), (0, 0, 255, 0))
    clear.save(tmp_path / "clear.png")
    assert np.asarray(open_rgb(tmp_path / "clear.png"))[0, 0].tolist() == [255, 255, 255]
    assert open_rgb(root / "stripes" / "palette.gif").mode == "RGB"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("stretch", (16, 16)), ("shorterSideCrop", (16, 16)), ("letterbox", (16, 16))],
)
def test_every_resize_policy_gives_the_square_input(policy, expected):
    wide = Image.new("RGB", (64, 32), (200, 10, 10))
    out = resize(wide, 16, policy)
    assert out.size == expected
    corner = np.asarray(out)[0, 0].tolist()
    assert corner == ([0, 0, 0] if policy == "letterbox" else [200, 10, 10])
