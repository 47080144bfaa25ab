"""An artifact directory as `crucible train` writes it, read and verified without torch.

`model.json` (the model card) names the architecture, classes, input size, normalization and the
sha256 of the weights file (`model.pt`). The weights are served only when their sha256 matches the
card, so a server never answers with weights nobody gated. Nothing here imports torch: a failed
check is reported in a fraction of a second, and the operator may read cards too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from crucible.checksums import sha256_of

CARD_FILE = "model.json"
# As in crucible.trainer.imaging (not imported: this module stays light enough for the operator).
RESIZE_POLICIES = ("stretch", "shorterSideCrop", "letterbox")
DEFAULT_WEIGHTS_FILE = "model.pt"


class ArtifactError(Exception):
    """The artifact cannot be served: a missing file, a checksum mismatch, an unreadable card."""


@dataclass(frozen=True)
class OnnxCopy:
    """An ONNX file of the artifact, with the sha256 it must have."""

    file: str
    sha256: str


@dataclass(frozen=True)
class OnnxRecord:
    """What the card says of the model's ONNX copies (see `crucible.trainer.onnx_export`)."""

    verified: bool = False
    # Why the fp32 copy is not verified ("" when it is).
    reason: str = "the card records no ONNX export"
    model: OnnxCopy | None = None
    int8: OnnxCopy | None = None
    # The int8 copy's measured held-out accuracy drop, and the limit the training run set for it.
    int8_accuracy_drop: float | None = None
    max_accuracy_drop: float | None = None
    # Why there is no int8 copy, when there is none.
    int8_reason: str = ""


@dataclass(frozen=True)
class ModelCard:
    """What the server needs from model.json."""

    name: str
    architecture: str
    classes: list[str]
    image_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dropout: float
    weights_file: str
    sha256: str
    resize: str = "stretch"  # the eval transform's resize policy (cards before it existed: stretch)
    onnx: OnnxRecord = OnnxRecord()
    # Images per class the model was trained on (the drift signal's reference); None when unknown.
    class_counts: tuple[float, ...] | None = None


@dataclass(frozen=True)
class VerifiedArtifact:
    directory: Path
    card: ModelCard
    weights: Path  # its sha256 matched the card's


class _Card:
    """Typed access to the card's JSON; every failure names the field and the file."""

    def __init__(self, document: dict, where: Path) -> None:
        self.document = document
        self.where = where

    def error(self, message: str) -> ArtifactError:
        return ArtifactError(f"{self.where}: {message}")

    def get(self, *path: str) -> object:
        value: object = self.document
        for key in path:
            if not isinstance(value, dict) or key not in value:
                raise self.error(f"missing {'.'.join(path)!r}")
            value = value[key]
        return value

    def numbers(self, *path: str, convert: type = float) -> tuple:
        value = self.get(*path)
        try:
            return tuple(convert(item) for item in value)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise self.error(f"{'.'.join(path)} must be a list of numbers, got {value!r}") from None


def _onnx_copy(card: _Card, record: dict, field: str) -> OnnxCopy | None:
    file, sha256 = record.get("file"), record.get("sha256")
    if not file or not sha256:
        return None
    if not isinstance(file, str) or Path(file).name != file:
        raise card.error(f"{field}.file must be a file name in the artifact directory, got {file!r}")
    return OnnxCopy(file, str(sha256))


def _optional_number(card: _Card, record: dict, key: str, field: str) -> float | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise card.error(f"{field}.{key} must be a number, got {value!r}")
    return float(value)


def _parse_onnx(card: _Card, record: object) -> OnnxRecord:
    if record is None:
        return OnnxRecord()
    if not isinstance(record, dict):
        raise card.error(f"onnx must be an object, got {record!r}")
    model = _onnx_copy(card, record, "onnx")
    verified = record.get("verified") is True and model is not None
    int8 = record.get("int8") if isinstance(record.get("int8"), dict) else {}
    return OnnxRecord(
        verified=verified,
        reason="" if verified else str(record.get("reason") or "not verified at export"),
        model=model if verified else None,
        int8=_onnx_copy(card, int8, "onnx.int8") if verified else None,
        int8_accuracy_drop=_optional_number(card, int8, "accuracyDrop", "onnx.int8"),
        max_accuracy_drop=_optional_number(card, int8, "maxAccuracyDrop", "onnx.int8"),
        int8_reason=str(int8.get("reason") or ""),
    )


def _class_counts(document: dict, classes: list[str]) -> tuple[float, ...] | None:
    """The training class counts (`trainClassCounts`), or else the held-out split's per-class support
    (a stratified split: the same shares); None when the card has neither."""
    counts = document.get("trainClassCounts")
    if not isinstance(counts, dict):
        per_class: object = document
        for key in ("evaluation", "heldOut", "perClass"):
            per_class = per_class.get(key) if isinstance(per_class, dict) else None
        if not isinstance(per_class, dict):
            return None
        counts = {
            name: values.get("support") if isinstance(values, dict) else None
            for name, values in per_class.items()
        }
    values = [counts.get(name) for name in classes]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in values):
        return None
    return tuple(float(v) for v in values) if sum(values) > 0 else None  # type: ignore[arg-type]


def _parse_card(document: dict, where: Path) -> ModelCard:
    card = _Card(document, where)
    classes = card.get("classes")
    if not isinstance(classes, list) or not classes:
        raise card.error("classes must be a non-empty list of names")
    shape = card.numbers("input", "shape", convert=int)
    if len(shape) != 3 or shape[0] != 3 or min(shape) < 1:
        raise card.error(f"input.shape must be [3, H, W], got {list(shape)}")
    mean, std = card.numbers("normalization", "mean"), card.numbers("normalization", "std")
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise card.error("normalization needs 3 means and 3 positive stds")
    weights = document.get("weights") if isinstance(document.get("weights"), dict) else {}
    sha256 = weights.get("sha256") or card.get("sha256")
    if document.get("sha256") and document["sha256"] != sha256:
        raise card.error("sha256 and weights.sha256 disagree")
    weights_file = str(weights.get("file") or DEFAULT_WEIGHTS_FILE)
    if Path(weights_file).name != weights_file:
        raise card.error(f"weights.file must be a file name in the artifact directory, got {weights_file!r}")
    try:
        dropout = float(document.get("dropout") or 0.0)
    except (TypeError, ValueError):
        raise card.error(f"dropout must be a number, got {document.get('dropout')!r}") from None
    resize = "stretch"
    if isinstance(document.get("preprocess"), dict):
        resize = str(document["preprocess"].get("resize", "stretch"))
        if resize not in RESIZE_POLICIES:
            raise card.error(f"preprocess.resize {resize!r} is not one of {', '.join(RESIZE_POLICIES)}")
    return ModelCard(
        name=str(card.get("name")),
        architecture=str(card.get("architecture")),
        classes=[str(name) for name in classes],
        image_shape=shape,  # type: ignore[arg-type]
        mean=mean,
        std=std,
        dropout=dropout,
        weights_file=weights_file,
        sha256=str(sha256),
        resize=resize,
        onnx=_parse_onnx(card, document.get("onnx")),
        class_counts=_class_counts(document, [str(name) for name in classes]),
    )


def read_card(directory: Path) -> ModelCard:
    path = directory / CARD_FILE
    if not directory.is_dir():
        raise ArtifactError(f"{directory} is not a directory")
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: is {directory} an artifact written by `crucible train`?")
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    return _parse_card(document, path)


def _verified_file(path: Path, expected_sha256: str, what: str) -> Path:
    """`path`, once it exists and its sha256 is the one model.json names."""
    if not path.is_file():
        raise ArtifactError(f"{what} {path} is missing")
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise ArtifactError(
            f"checksum mismatch for {path}: model.json says sha256 {expected_sha256}, the file has {actual}"
        )
    return path


def verify_onnx(directory: Path, copy: OnnxCopy) -> Path:
    """The path of an ONNX copy, once its sha256 matches the card's."""
    return _verified_file(directory / copy.file, copy.sha256, "ONNX file")


def verify_artifact(directory: Path) -> VerifiedArtifact:
    """The card and the weights file, once the file's sha256 matches the card's."""
    card = read_card(directory)
    path = _verified_file(directory / card.weights_file, card.sha256, "weights file")
    return VerifiedArtifact(directory, card, path)
