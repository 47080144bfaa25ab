"""Loading an artifact: served only when complete and when its weights match the card's sha256."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from crucible.server.artifact import ArtifactError
from crucible.server.errors import ModelNotFound, ModelNotReady
from crucible.server.repository import ModelRepository, load_artifact
from tests.server.helpers import reference_probabilities

CPU = torch.device("cpu")


@pytest.fixture
def artifact(digits_artifact: Path, tmp_path: Path) -> Path:
    """A copy of the digits artifact that a test may damage."""
    return Path(shutil.copytree(digits_artifact, tmp_path / "artifact"))


def edit_card(artifact: Path, **changes) -> None:
    card = json.loads((artifact / "model.json").read_text())
    card.update(changes)
    (artifact / "model.json").write_text(json.dumps(card))


def refusal(artifact: Path) -> str:
    with pytest.raises(ArtifactError) as refused:
        load_artifact(artifact, CPU)
    return str(refused.value)


def test_a_good_artifact_loads_under_its_card_name_and_predicts_like_the_trained_model(artifact):
    model = load_artifact(artifact, CPU)
    assert (model.name, model.card.architecture, model.image_shape) == (
        "digits-tiny",
        "tiny_cnn",
        (3, 16, 16),
    )
    assert model.classes == [str(d) for d in range(10)]
    assert model.version == model.card.sha256[:12]
    pixels = np.random.default_rng(0).integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)
    np.testing.assert_allclose(model.predict([pixels]), reference_probabilities(artifact, pixels), atol=1e-5)


def test_the_name_can_be_overridden(artifact):
    assert load_artifact(artifact, CPU, name="digits").name == "digits"


def test_a_model_is_ready_only_after_warm_up(artifact):
    model = load_artifact(artifact, CPU)
    assert not model.ready
    model.warm_up((1, 4))
    assert model.ready


def test_calibration_warms_up_every_candidate_size_and_chooses_one_of_them(artifact):
    model = load_artifact(artifact, CPU)
    calibration = model.calibrate_batch_size(8)
    assert model.ready and model.calibration is calibration
    assert list(calibration.seconds_per_image) == [1, 2, 4, 8]
    assert all(seconds > 0 for seconds in calibration.seconds_per_image.values())
    assert calibration.max_batch_size in (1, 2, 4, 8) and not calibration.kept_because


def test_tampered_weights_are_refused_naming_both_checksums(artifact):
    card = json.loads((artifact / "model.json").read_text())
    with (artifact / "model.pt").open("ab") as weights:
        weights.write(b"tampered")
    message = refusal(artifact)
    assert message.startswith(
        f"checksum mismatch for {artifact / 'model.pt'}: model.json says sha256 {card['sha256']}"
    )
    actual = hashlib.sha256((artifact / "model.pt").read_bytes()).hexdigest()
    assert message.endswith(f", the file has {actual}")


def test_missing_weights_are_refused(artifact):
    (artifact / "model.pt").unlink()
    assert refusal(artifact) == f"weights file {artifact / 'model.pt'} is missing"


def test_a_directory_without_a_card_is_refused(artifact):
    (artifact / "model.json").unlink()
    assert refusal(artifact) == (
        f"{artifact / 'model.json'} is missing: is {artifact} an artifact written by `crucible train`?"
    )


def test_a_path_that_is_not_a_directory_is_refused(tmp_path):
    assert refusal(tmp_path / "nowhere") == f"{tmp_path / 'nowhere'} is not a directory"


def test_an_unreadable_card_is_refused(artifact):
    (artifact / "model.json").write_text("{not json")
    assert refusal(artifact).startswith(f"{artifact / 'model.json'} is not valid JSON: ")


def test_a_card_missing_a_field_is_refused_naming_it(artifact):
    card = json.loads((artifact / "model.json").read_text())
    del card["normalization"]
    (artifact / "model.json").write_text(json.dumps(card))
    assert refusal(artifact) == f"{artifact / 'model.json'}: missing 'normalization.mean'"


def test_a_weights_file_outside_the_artifact_is_refused(artifact):
    edit_card(artifact, weights={"file": "../elsewhere.pt", "sha256": "0" * 64}, sha256="0" * 64)
    assert refusal(artifact) == (
        f"{artifact / 'model.json'}: weights.file must be a file name in the artifact directory, got '../elsewhere.pt'"
    )


def test_an_unknown_architecture_is_refused(artifact):
    edit_card(artifact, architecture="alexnet")
    assert "architecture: 'alexnet' is not one of" in refusal(artifact)


def test_weights_of_another_network_are_refused(artifact):
    edit_card(artifact, classes=[str(d) for d in range(12)], numClasses=12)
    assert refusal(artifact).startswith(f"cannot load weights {artifact / 'model.pt'}: ")


def test_the_repository_tells_unknown_from_not_ready(artifact):
    model = load_artifact(artifact, CPU)
    repository = ModelRepository([model])
    with pytest.raises(ModelNotFound, match="model 'cats' not found"):
        repository.get("cats")
    with pytest.raises(ModelNotReady, match="model 'digits-tiny' is not ready"):
        repository.get_ready("digits-tiny")
    model.warm_up()
    assert repository.get_ready("digits-tiny") is model
    with pytest.raises(ValueError, match="already served"):
        repository.add(model)


def test_pixels_and_normalized_floats_joined_in_one_batch_answer_as_each_part_alone(artifact):
    model = load_artifact(artifact, CPU)
    rng = np.random.default_rng(0)
    shape = model.image_shape
    pixels, floats = rng.integers(0, 256, (3, *shape), dtype=np.uint8), rng.standard_normal((2, *shape))
    parts = [pixels, floats.astype(np.float32), pixels[:1]]
    alone = np.concatenate([model.predict([part]) for part in parts])
    np.testing.assert_allclose(model.predict(parts), alone, atol=1e-6)
    np.testing.assert_allclose(alone[:3], reference_probabilities(artifact, pixels), atol=1e-5)


def test_pixels_are_scaled_and_shifted_exactly_as_in_training(artifact):
    model = load_artifact(artifact, CPU)
    pixels = np.arange(2 * 3 * 16 * 16).reshape(2, 3, 16, 16).astype(np.uint8)  # every value 0..255
    mean = torch.tensor(model.card.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.card.std).view(1, 3, 1, 1)
    expected = torch.from_numpy(pixels).float() * (1 / (255 * std)) + (-mean / std)
    assert torch.equal(model._model_input([pixels]), expected)
