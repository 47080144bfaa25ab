from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from crucible.api.trainingrun import DatasetSpec
from crucible.trainer.data import DatasetError, curate, load_dataset
from crucible.trainer.models import build_model
from crucible.trainer.pipeline import Feed, Transform
from crucible.trainer.run import RunContext, train
from tests.conftest import fast_spec


def _image_folder(root, classes=("circle", "square", "stripes"), per_class=24):
    """Small synthetic PNGs, one folder per class, each class visibly different."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 40, (20, 20, 3), dtype=np.uint8)
            if c == 0:
                yy, xx = np.mgrid[:20, :20]
                pixels[(yy - 10) ** 2 + (xx - 10) ** 2 < 36] = 230
            elif c == 1:
                pixels[5:15, 5:15] = 230
            else:
                pixels[::4] = 230
            Image.fromarray(pixels).save(root / name / f"{i}.png")
        (root / name / "notes.txt").write_text("not an image, skipped")
    return root


def test_image_folder_trains_end_to_end(tmp_path):
    root = _image_folder(tmp_path / "shapes")
    spec = fast_spec(
        dataset={"source": "imageFolder", "uri": f"file://{root}", "imageSize": 16},
        hyperparameters={"epochs": 8, "batchSize": 16},
        gates={"crossValidation": {"folds": 2, "epochs": 8}},
    )
    result = train(spec, RunContext(name="shapes", output_dir=tmp_path / "out", device="cpu"))
    assert result.phase == "Succeeded", result.reason
    assert result.metrics["accuracy"] >= 0.9


def test_image_folder_with_fixed_classes_and_unreadable_image(tmp_path):
    root = _image_folder(tmp_path / "shapes")
    spec = DatasetSpec(source="imageFolder", uri=str(root), classes=["square", "circle"], imageSize=8)
    data = curate(load_dataset(spec, 0), spec, 0)
    assert data.classes == ["square", "circle"] and data.class_counts() == [24, 24]
    (root / "square" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"spec.dataset.maxBadFiles: 1 unreadable image file.*broken.png"):
        load_dataset(spec, 0)


def test_remote_dataset_schemes_are_refused_by_name(tmp_path):
    with pytest.raises(DatasetError, match="scheme gs:// is not supported here"):
        load_dataset(DatasetSpec(source="imageFolder", uri="gs://bucket/data"), 0)


def test_fake_source_gives_the_requested_shape():
    data = load_dataset(DatasetSpec(source="fake", fakeSamples=40, imageSize=12, classes=["a", "b"]), 0)
    pixels, labels = next(iter(Feed(data, Transform(12), None, torch.device("cpu"), batch_size=40)))
    assert pixels.shape == (40, 3, 12, 12) and data.classes == ["a", "b"] and set(labels.tolist()) == {0, 1}


@pytest.mark.parametrize("architecture", ["tiny_cnn", "mobilenet_v3_small", "resnet18", "efficientnet_b0"])
def test_every_architecture_classifies_small_images(architecture):
    model = build_model(architecture, num_classes=7, dropout=0.1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_pretrained_weights_load_from_a_local_file_and_the_head_is_replaced(tmp_path):
    source = build_model("resnet18", num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "resnet18.pt")
    model = build_model("resnet18", num_classes=3, pretrained_weights=str(tmp_path / "resnet18.pt"))
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 3


def test_pretrained_weights_bring_imagenet_normalization_to_the_card_and_pass_the_debug_gate(tmp_path):
    torch.save(build_model("tiny_cnn", num_classes=10).state_dict(), tmp_path / "tiny.pt")
    spec = fast_spec(
        model={"pretrainedWeights": str(tmp_path / "tiny.pt")},
        hyperparameters={"epochs": 1},
        gates={"crossValidation": {"enabled": False}, "overfitting": {"enabled": False}},
    )
    result = train(spec, RunContext(name="pre", output_dir=tmp_path / "out", device="cpu"))
    assert result.phase == "Succeeded", result.reason
    card = json.loads((tmp_path / "out" / "model.json").read_text())
    assert card["normalization"] == {
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "source": "imagenet",
    }
    assert card["preprocess"]["resize"] == "stretch"
    # Digits are not ImageNet photos: the debug gate holds the data to checks that do not depend on
    # the normalization, so statistics the data only roughly matches fail nothing.
    assert result.gates["debug"].passed
