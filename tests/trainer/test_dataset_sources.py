"""spec.dataset.sources: extra image folders join the training side; the primary alone decides the
held-out split, so a retrain on grown data keeps it and stays comparable for promotion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from crucible.api.manifest import InvalidSpec, load_file, parse_spec
from crucible.api.result import TrainResult
from crucible.api.trainingrun import DatasetSpec
from crucible.compare import comparability_problems, fingerprint_problems
from crucible.operator.modeldeployment.config import PromotionConfig
from crucible.operator.modeldeployment.rollout.promotion import choose
from crucible.trainer.data import DatasetError, DigitsSource, curate, digit_pixels, load_dataset, split
from crucible.trainer.imaging import open_rgb
from crucible.trainer.pipeline import Pipeline, Transform
from crucible.trainer.sources import (
    check_sources,
    held_out_copies,
    load_sources,
    record_counts,
    training_side,
)
from crucible.trainer.survey import survey
from tests.cli import run_crucible
from tests.conftest import fast_spec
from tests.s3_store import S3Store

DIGITS, LABELS = digit_pixels()
CPU = torch.device("cpu")
GATES_OFF = ("debug", "crossValidation", "baseline", "overfitting", "heldOut")
QUICK = {"hyperparameters": {"epochs": 1}, "gates": {name: {"enabled": False} for name in GATES_OFF}}


def write_digit(folder: Path, index: int, invert: bool = False, name: str | None = None) -> Path:
    """Digit `index` as a PNG (mode L) under folder/<its label>/, as a client would send it."""
    pixels = 255 - DIGITS[index] if invert else DIGITS[index]
    path = folder / str(LABELS[index]) / f"{name or index}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)  # 2-D uint8: mode L
    return path


def held_out_items(spec: DatasetSpec) -> list[int]:
    """The positions in the bundled digits of the held-out split a run with `spec` uses."""
    data = curate(load_dataset(spec, spec.split_seed), spec, spec.split_seed)
    return split(data, spec.test_fraction, spec.split_seed)[1].items.tolist()


def test_a_digit_sent_as_png_decodes_to_the_training_pixels(tmp_path: Path) -> None:
    source = DigitsSource()
    for index in (0, 5, 1796):
        decoded = open_rgb(write_digit(tmp_path, index))
        assert np.array_equal(np.asarray(decoded), np.asarray(source.read(index)))
        transform = Transform(32)
        assert np.array_equal(transform(decoded, 0), transform(source.read(index), 0))
    # Truncating 0..16 x 255/16 instead of rounding makes other pixels: such a copy is not recognised.
    truncated = (load_digits_images()[0] * (255 / 16)).astype(np.uint8)
    assert not np.array_equal(truncated, DIGITS[0])


def load_digits_images() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images


def test_sources_are_validated_naming_the_field() -> None:
    with pytest.raises(
        InvalidSpec, match=r"spec\.dataset\.sources\[1\]\.uri: scheme http:// is not supported"
    ):
        parse_spec("TrainingRun", {"dataset": {"sources": [{"uri": "a"}, {"uri": "http://host/x"}]}})
    with pytest.raises(
        InvalidSpec, match=r"spec\.dataset\.sources: source names must be unique; repeated: x"
    ):
        parse_spec("TrainingRun", {"dataset": {"sources": [{"uri": "a/x"}, {"uri": "s3://b/x"}]}})
    spec = parse_spec("TrainingRun", {"dataset": {"sources": [{"uri": "pvc://data/capture/labelled/"}]}})
    assert spec.dataset.sources[0].label == "labelled"


def test_source_images_join_the_training_side_and_held_out_copies_are_dropped(tmp_path: Path) -> None:
    spec = fast_spec(dataset={"sources": [{"uri": str(tmp_path / "labelled")}]}).dataset
    primary = curate(load_dataset(spec, 0), spec, 0)
    primary_train, held_out = split(primary, spec.test_fraction, 0)
    for index in primary_train.items[:5]:
        write_digit(tmp_path / "labelled", int(index), invert=True)
    write_digit(tmp_path / "labelled", int(held_out.items[0]), name="copy")
    # A picture caught half-written (a capture view is written to while runs read it): skipped, counted.
    (tmp_path / "labelled" / "3" / "partial.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    sources = load_sources(spec, primary.classes)
    assert sources[0].bad_files == 1 and sources[0].result_entry()["badFiles"] == 1
    side = training_side(primary_train, sources)
    assert len(side.data) == len(primary_train) + 6 and side.origin.tolist().count(1) == 6
    copy_name = f"labelled:{LABELS[held_out.items[0]]}/copy.png"
    assert copy_name in side.data.image_names()
    pipeline = Pipeline(16, "stretch", None, CPU)
    side_pixels, held_out_pixels = survey(side.data, pipeline, 3), survey(held_out, pipeline, 3)
    dropped = held_out_copies(side, side_pixels.pixel_digests, held_out_pixels.pixel_digests)
    assert side.data.subset(dropped).image_names() == [copy_name]
    record_counts(side, sources, dropped)
    assert (sources[0].images, sources[0].held_out_copies) == (5, 1)


def test_an_s3_source_is_read_through_the_dataset_cache(
    tmp_path: Path, s3_store: S3Store, monkeypatch
) -> None:
    bucket = s3_store.new_bucket()
    for index in range(4):
        write_digit(tmp_path / "png", index, invert=True)
        s3_store.put(
            bucket,
            f"capture/labelled/{LABELS[index]}/{index}.png",
            (tmp_path / "png" / str(LABELS[index]) / f"{index}.png").read_bytes(),
        )
    for key, value in s3_store.env().items():
        monkeypatch.setenv(key, value)
    spec = DatasetSpec(sources=[{"uri": f"s3://{bucket}/capture/labelled"}])
    [source] = load_sources(spec, [str(i) for i in range(10)], cache_dir=tmp_path / "cache")
    assert source.name == "labelled" and source.data is not None and len(source.data) == 4
    assert np.array_equal(
        np.asarray(source.data.source.read(0)), np.asarray(open_rgb(tmp_path / "png" / "0" / "0.png"))
    )


def test_a_capture_destination_given_instead_of_its_labelled_view_says_so(tmp_path: Path) -> None:
    write_digit(tmp_path / "capture" / "labelled", 0)
    (tmp_path / "capture" / "requests").mkdir()
    spec = DatasetSpec(sources=[{"uri": str(tmp_path / "capture")}])
    [source] = load_sources(spec, [str(i) for i in range(10)])
    assert source.data is None and source.ignored_folders == ["labelled", "requests"]
    assert source.warning.endswith(f"its image-folder view is {tmp_path}/capture/labelled)")


def test_sources_this_machine_cannot_read_fail_before_training_naming_the_field() -> None:
    spec = DatasetSpec(sources=[{"uri": "somewhere"}, {"uri": "pvc://captures/labelled"}])
    with pytest.raises(
        DatasetError, match=r"^spec\.dataset\.sources\[1\]\.uri: scheme pvc:// is not supported here"
    ):
        check_sources(spec)


def test_the_result_stays_under_4_kib_with_many_sources() -> None:
    sources = {
        f"source-{i:02d}-{'x' * 50}": {"images": i, "ignoredFolders": 2, "warning": "w" * 200}
        for i in range(16)
    }
    result = TrainResult(phase="Succeeded", reason="", sources=sources)
    compact = json.loads(result.to_json())
    assert len(result.to_json()) <= 4096
    assert compact["sources"][f"source-03-{'x' * 50}"] == 3


@pytest.mark.slow
def test_a_retrain_on_grown_sources_keeps_the_held_out_split_and_stays_comparable(tmp_path: Path) -> None:
    from crucible.trainer.run import RunContext, train

    base = fast_spec(**QUICK)
    held_out = held_out_items(base.dataset)
    training = sorted(set(range(len(LABELS))) - set(held_out))

    captured = tmp_path / "labelled"
    for index in training[:40]:
        write_digit(captured, index, invert=True)
    # A client sending held-out pictures back as feedback: these must not train the model.
    for index in held_out[:3]:
        write_digit(captured, index, name=f"copy-{index}")
    (captured / "cat").mkdir()
    Image.fromarray(DIGITS[0]).save(captured / "cat" / "x.png")
    empty = tmp_path / "empty"
    empty.mkdir()

    sources = [{"uri": str(captured)}, {"uri": str(empty), "name": "later"}]
    grown = fast_spec(**QUICK, dataset={"sources": sources})
    original = train(base, RunContext(name="original", output_dir=tmp_path / "a", device="cpu"))
    retrained = train(grown, RunContext(name="retrained", output_dir=tmp_path / "b", device="cpu"))
    assert original.phase == retrained.phase == "Succeeded", (original.reason, retrained.reason)
    card_a = json.loads((tmp_path / "a" / "model.json").read_text())
    card_b = json.loads((tmp_path / "b" / "model.json").read_text())

    assert card_b["heldOutFingerprint"] == card_a["heldOutFingerprint"]
    assert card_b["datasetFingerprint"] == card_a["datasetFingerprint"]
    assert card_b["trainingFingerprint"] != card_a["trainingFingerprint"]
    assert retrained.metrics["testImages"] == original.metrics["testImages"] == len(held_out)
    trained_on = retrained.metrics["trainImages"] + retrained.metrics["validationImages"]
    assert trained_on == original.metrics["trainImages"] + original.metrics["validationImages"] + 40

    labelled, later = card_b["sources"]
    assert labelled["name"] == "labelled" and labelled["uri"] == str(captured)
    assert labelled["images"] == 40 and labelled["heldOutCopies"] == 3
    assert labelled["ignoredFolders"] == ["cat"] and len(labelled["fingerprint"]) == 16
    assert later["images"] == 0 and "no readable images" in later["warning"]
    compact = json.loads(retrained.to_json())["sources"]
    assert compact["labelled"] == {"images": 40, "heldOutCopies": 3, "ignoredFolders": 1}
    assert compact["later"]["images"] == 0 and "no readable images" in compact["later"]["warning"]
    assert "sources" not in json.loads(original.to_json())

    # Comparable for promotion: same dataset, classes and held-out split; the training data grew.
    assert comparability_problems(card_a, card_b) == []
    status_a = TrainResult.model_validate_json(original.to_json()).fingerprints
    status_b = TrainResult.model_validate_json(retrained.to_json()).fingerprints
    assert fingerprint_problems(status_a, status_b) == []
    assert status_a["training"] != status_b["training"]
    candidate = {
        "metadata": {"name": "retrained", "labels": {}},
        "status": {
            "phase": "Succeeded",
            "gates": {},
            "metrics": {"accuracy": 1.0},
            "artifact": {"uri": "pvc://artifacts/retrained", "sha256": "a" * 64},
            "fingerprints": status_b,
        },
    }
    from crucible.api.modeldeployment import PromotionSpec

    choice = choose([candidate], "original", 0.5, PromotionSpec(), PromotionConfig(), (), status_a)
    assert choice.run == "retrained", choice.message


EXAMPLE = Path(__file__).parents[2] / "examples" / "trainingrun-retrain.yaml"


def test_the_retrain_example_reads_the_original_digits_plus_a_labelled_view() -> None:
    dataset = load_file(EXAMPLE, expected_kind="TrainingRun").spec.dataset
    assert dataset.source == "digits" and dataset.split_seed == 0
    assert [(source.label, source.uri) for source in dataset.sources] == [
        ("captured", "captures/digits/labelled")
    ]


@pytest.mark.slow
def test_crucible_train_reads_the_examples_labelled_view(tmp_path: Path) -> None:
    """The retrain example, shortened, trains through `crucible train -f` on a captured labelled/ view."""
    document = yaml.safe_load(EXAMPLE.read_text())
    spec = document["spec"]
    source = spec["dataset"]["sources"][0]
    for index in range(12):
        write_digit(tmp_path / source["uri"], index, invert=True)
    spec["dataset"]["imageSize"] = 16
    spec["model"] = {"architecture": "tiny_cnn"}
    spec["hyperparameters"]["epochs"] = 1
    spec["gates"] = {name: {"enabled": False} for name in GATES_OFF}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(document))
    proc = run_crucible("train", "-f", "run.yaml", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sources"] == {"captured": {"images": 12}}
    card = json.loads((tmp_path / spec["output"]["uri"] / "model.json").read_text())
    assert card["sources"][0]["uri"] == source["uri"] and card["sources"][0]["images"] == 12
