"""The TrainingRun spec: what to train, on which data, with which gates."""

from __future__ import annotations

from collections import Counter
from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from crucible.api.common import SpecModel

Architecture = Literal[
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet_b0",
    "tiny_cnn",
]
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)
DatasetSource = Literal["digits", "fake", "imageFolder"]
Optimizer = Literal["adamw", "adam", "sgd"]
Scheduler = Literal["none", "cosine", "onecycle", "step"]
# Scores of a set of predictions (crucible.trainer.metrics). balancedAccuracy (mean per-class recall)
# and macroF1 are not fooled by a majority-class guess on imbalanced data; accuracy is.
CvMetric = Literal["balancedAccuracy", "macroF1", "accuracy"]
EarlyStoppingMetric = Literal["loss", "balancedAccuracy", "macroF1", "accuracy"]
ResizePolicy = Literal["stretch", "shorterSideCrop", "letterbox"]

REMOTE_SCHEMES = ("http://", "https://", "s3://", "gs://", "pvc://")
# Where an extra dataset source may live: a local path has no scheme.
SOURCE_SCHEMES = ("file://", "s3://", "pvc://")
SOURCE_NAME_PATTERN = r"^[A-Za-z0-9]([-_.A-Za-z0-9]{0,62}[A-Za-z0-9])?$"


def repeated_names(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted(name for name, count in Counter(names).items() if count > 1)


class SourceSpec(SpecModel):
    """An extra image folder whose images join the training side only (e.g. captured, labelled data)."""

    uri: str = Field(
        ...,
        min_length=1,
        description="One folder per class: a local path or file:// URI, s3://<bucket>/<prefix> (local runs; "
        "cached like the primary dataset), or pvc://<claim>/<path> on a cluster (mounted read-only).",
    )
    name: str | None = Field(
        None,
        pattern=SOURCE_NAME_PATTERN,
        description="A short name for the result and the model card. Default: the last part of uri.",
    )

    @field_validator("uri")
    @classmethod
    def _folder_uri(cls, value: str) -> str:
        if "://" in value and not value.startswith(SOURCE_SCHEMES):
            scheme = value.split("://", 1)[0]
            raise ValueError(
                f"scheme {scheme}:// is not supported; allowed: a local path, file://, s3://, pvc://"
            )
        return value

    @property
    def label(self) -> str:
        """The name in the result: `name`, else the uri's last path part."""
        if self.name:
            return self.name
        path = self.uri.split("://", 1)[-1].rstrip("/")
        return path.rsplit("/", 1)[-1] or path or "source"


class DatasetSpec(SpecModel):
    """Where the images come from and how the subset used for this run is curated."""

    source: DatasetSource = Field(
        "digits",
        description="digits: scikit-learn's bundled 8x8 handwritten digits; fake: random images for smoke "
        "tests; imageFolder: one sub-folder of images per class under `uri`.",
    )
    uri: str | None = Field(
        None,
        description="For imageFolder: a local path or file:// URI holding one folder per class "
        "(hidden files and ._* files are skipped), or s3://<bucket>/<prefix> (copied once into a local "
        "cache, then only new or changed objects).",
    )
    classes: list[str] = Field(
        default_factory=list,
        description="The fixed class list, in label order. Empty means every class found in the data.",
    )
    sample_fraction: float = Field(
        1.0, gt=0, le=1, description="Fraction of each class to keep (stratified, seeded)."
    )
    per_class_limit: int | None = Field(None, ge=1, description="At most this many images per class.")
    balance: bool = Field(
        False, description="Keep the same number of images in every class (the smallest class's count)."
    )
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="Fraction held out, stratified, for the final evaluation."
    )
    split_seed: int = Field(
        0,
        ge=0,
        le=2**31 - 1,
        description="Seed of the curation and of the held-out and validation splits. Kept apart from the "
        "run's seed so that runs with different seeds share a held-out split and can be compared.",
    )
    validation_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="Fraction of the training split carved off (stratified) as the validation split: it "
        "drives early stopping, pruning and per-epoch figures, so the held-out split is touched once, by "
        "the exported model.",
    )
    image_size: int = Field(
        32, ge=8, le=1024, description="Images are resized to imageSize x imageSize, 3 channels."
    )
    resize: ResizePolicy | None = Field(
        None,
        description="How a picture becomes imageSize x imageSize: stretch (both sides, aspect ratio lost), "
        "shorterSideCrop (shorter side to imageSize, then the centre square) or letterbox (longer side to "
        "imageSize, black bars). Default: shorterSideCrop for imageFolder, stretch otherwise.",
    )
    max_bad_files: int = Field(
        0,
        ge=0,
        description="Unreadable image files tolerated: up to this many are skipped and counted in the "
        "result; more fail the run, naming the first few.",
    )
    fake_samples: int = Field(512, ge=10, le=100_000, description="For source fake: how many images.")
    sources: list[SourceSpec] = Field(
        default_factory=list,
        max_length=16,
        description="Extra image folders (e.g. captured, labelled data) whose images join the training side "
        "only: the primary dataset (source, uri) alone defines the held-out split, so retrains on grown "
        "data keep the same held-out split and stay comparable. Curation (sampleFraction, perClassLimit, "
        "balance) applies to the primary dataset only; folders of classes outside the class list are "
        "skipped; a source image identical to a held-out image is dropped.",
    )

    @model_validator(mode="after")
    def _uri_for_image_folder(self) -> DatasetSpec:
        if self.source == "imageFolder" and not self.uri:
            raise ValueError("uri is required when source is imageFolder")
        return self

    @field_validator("sources")
    @classmethod
    def _unique_source_names(cls, value: list[SourceSpec]) -> list[SourceSpec]:
        repeated = repeated_names([source.label for source in value])
        if repeated:
            raise ValueError(
                f"source names must be unique; repeated: {', '.join(repeated)} (set name on each source)"
            )
        return value

    @property
    def resize_policy(self) -> str:
        """The resize policy in effect (see `resize`)."""
        return self.resize or ("shorterSideCrop" if self.source == "imageFolder" else "stretch")


class ModelSpec(SpecModel):
    """The network to train."""

    architecture: Architecture = Field(
        "mobilenet_v3_small",
        description="A torchvision architecture by name, or tiny_cnn (a small CNN for fast tests).",
    )
    pretrained_weights: str | None = Field(
        None,
        description="A local path to a torchvision state dict to start from. Nothing is downloaded.",
    )
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout before the classifier.")

    @field_validator("pretrained_weights")
    @classmethod
    def _local_only(cls, value: str | None) -> str | None:
        if value and value.startswith(REMOTE_SCHEMES):
            raise ValueError("must be a local path (nothing is downloaded at run time)")
        return value


class AugmentationSpec(SpecModel):
    """Random transforms applied to training batches only."""

    random_crop: bool = Field(False, description="Pad, then crop back to size at a random offset.")
    crop_padding: int = Field(2, ge=0, le=64, description="Padding in pixels for randomCrop.")
    horizontal_flip: bool = Field(False, description="Flip half the images left to right.")
    random_resized_crop: bool = Field(
        False,
        description="Crop a random part (area fraction within randomResizedCropScale, aspect ratio 3/4 to "
        "4/3) and resize it to imageSize, instead of the eval resize.",
    )
    random_resized_crop_scale: list[float] = Field(
        default_factory=lambda: [0.08, 1.0],
        min_length=2,
        max_length=2,
        description="[min, max] area fraction of the picture that randomResizedCrop keeps, each in (0, 1].",
    )
    color_jitter: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Random brightness, contrast and saturation factors in "
        "[1 - colorJitter, 1 + colorJitter]; 0 turns it off.",
    )
    rotation: float = Field(
        0.0, ge=0, le=180, description="Rotate by a random angle in [-rotation, rotation] degrees; 0 is off."
    )

    @field_validator("random_resized_crop_scale")
    @classmethod
    def _scale_range(cls, value: list[float]) -> list[float]:
        low, high = value
        if not 0 < low <= high <= 1:
            raise ValueError("must be [min, max] with 0 < min <= max <= 1")
        return value


class EarlyStoppingSpec(SpecModel):
    """Stop the final training when the validation split stops improving; keep the best epoch's weights."""

    patience: int = Field(3, ge=1, le=10_000, description="Epochs without improvement before stopping.")
    metric: EarlyStoppingMetric = Field(
        "loss",
        description="Validation figure watched: loss (minimized), balancedAccuracy, macroF1 or accuracy.",
    )


class HyperparametersSpec(SpecModel):
    """How the final model is trained."""

    epochs: int = Field(20, ge=1, le=10_000, description="Passes over the training split.")
    batch_size: int = Field(64, ge=1, le=65_536, description="Images per optimizer step.")
    learning_rate: float = Field(2e-3, gt=0, le=100, description="Peak learning rate.")
    optimizer: Optimizer = Field("adamw", description="adamw, adam or sgd (with momentum).")
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum for sgd.")
    weight_decay: float = Field(1e-4, ge=0, le=1, description="Weight decay.")
    scheduler: Scheduler = Field(
        "onecycle", description="Learning-rate schedule: none, cosine, onecycle, or step (x0.1 at 1/3, 2/3)."
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the loss.")
    augmentation: AugmentationSpec = Field(default_factory=AugmentationSpec)
    early_stopping: EarlyStoppingSpec | None = Field(
        None, description="Early stopping on the validation split. Default: off (train every epoch)."
    )


class DebugGateSpec(SpecModel):
    """Cheap checks run before any real training: data, overfit one batch, reproducibility, gradients."""

    enabled: bool = Field(True, description="Run the debug gate.")
    overfit_batch_size: int = Field(32, ge=2, le=1024, description="Images in the batch to overfit.")
    overfit_steps: int = Field(
        100,
        ge=1,
        le=10_000,
        description="Optimizer steps on that one batch (MobileNet needs about 100 before its BatchNorm "
        "statistics follow the batch in eval mode).",
    )
    overfit_loss_fraction: float = Field(
        0.1,
        gt=0,
        le=1,
        description="After the steps, the batch's loss measured in eval mode must fall below this fraction "
        "of ln K (the loss of a uniform guess over K classes): 0.23 for 10 classes, 0.39 for 50.",
    )
    overfit_loss_bound: float | None = Field(
        None, gt=0, description="An absolute bound on that loss instead of overfitLossFraction x ln K."
    )
    min_class_balance: float = Field(
        0.2, ge=0, le=1, description="Smallest class count divided by largest must reach this ratio."
    )
    max_duplicates: int = Field(
        0,
        ge=0,
        description="Most images allowed in both the training and the held-out split (same content: the "
        "same file bytes for imageFolder, the same pixels for the bundled sets).",
    )
    max_constant_images: int = Field(
        0, ge=0, description="Most constant or near-constant images allowed (pixel std under 1% of range)."
    )


class CrossValidationGateSpec(SpecModel):
    """Stratified k-fold cross-validation on the training split."""

    enabled: bool = Field(True, description="Run the cross-validation gate.")
    folds: int = Field(5, ge=2, le=20, description="Number of stratified folds (at least 2).")
    epochs: int = Field(6, ge=1, le=10_000, description="Training epochs within each fold.")
    metric: CvMetric = Field(
        "balancedAccuracy",
        description="Score of each fold: balancedAccuracy (mean per-class recall; chance is 1/K whatever "
        "the class balance), macroF1 or accuracy. The baseline and heldOut gates use the same score.",
    )
    min_mean: float = Field(
        0.0,
        ge=0,
        le=1,
        description="An absolute floor for the mean fold score. Default 0: the baseline gate holds the "
        "score to what trivial models reach on the same folds, which fits any number of classes.",
    )
    max_std: float = Field(0.05, ge=0, le=1, description="The fold scores' std must not exceed this.")


class OverfittingGateSpec(SpecModel):
    """After the final training: train metric minus held-out metric must stay small."""

    enabled: bool = Field(True, description="Run the overfitting gate.")
    max_gap: float = Field(0.05, ge=0, le=1, description="Largest allowed train minus held-out accuracy.")


class BaselineGateSpec(SpecModel):
    """The network must beat trivial models fitted on exactly the same folds: the majority class, and a
    logistic regression on a thumbnail of each image."""

    enabled: bool = Field(True, description="Run the baseline gate (needs the cross-validation gate).")
    min_lift: float = Field(
        0.05,
        ge=-1,
        le=1,
        description="Absolute lift: the CV mean score must exceed the best baseline's CV mean by this much "
        "(0.05 = five points of balancedAccuracy), or by half the headroom 1 - baseline when that is less.",
    )
    thumbnail_size: int = Field(
        3,
        ge=1,
        le=32,
        description="The linear baseline sees each image averaged down to thumbnailSize x thumbnailSize "
        "pixels per channel: coarse colour layout only. Raise it for a stronger baseline.",
    )


class HeldOutGateSpec(SpecModel):
    """The exported model, judged once on the held-out split: close to its CV estimate and above the best
    baseline, so a final fit that went wrong is never exported."""

    enabled: bool = Field(True, description="Run the heldOut gate.")
    tolerance: float = Field(
        0.1,
        ge=0,
        le=1,
        description="The held-out score (the cross-validation metric) must reach the CV mean minus this.",
    )


class GatesSpec(SpecModel):
    """A model is only exported, and only ever served, when every enabled gate passed."""

    debug: DebugGateSpec = Field(default_factory=DebugGateSpec)
    cross_validation: CrossValidationGateSpec = Field(default_factory=CrossValidationGateSpec)
    overfitting: OverfittingGateSpec = Field(default_factory=OverfittingGateSpec)
    baseline: BaselineGateSpec = Field(default_factory=BaselineGateSpec)
    held_out: HeldOutGateSpec = Field(default_factory=HeldOutGateSpec)


class ResourcesSpec(SpecModel):
    """Where and with what the trainer runs on a cluster (ignored by local runs)."""

    node_pool: str = Field("cpu", description="A node pool defined in the operator configuration.")
    cpu: str = Field("2", description="CPU request and limit, in Kubernetes quantity form.")
    memory: str = Field("4Gi", description="Memory request and limit, in Kubernetes quantity form.")
    gpu: int = Field(0, ge=0, le=16, description="GPUs to request (gpu pools).")


class TestSetSpec(SpecModel):
    """An extra labelled image folder the exported model is evaluated on, reported apart from the held-out
    split and never used for selection."""

    name: str = Field(
        ...,
        pattern=r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$",
        description="A short name: lowercase, digits, -.",
    )
    uri: str = Field(
        ..., description="A local path or file:// URI holding one folder per class (named as spec.dataset's)."
    )
    min_score: float | None = Field(
        None,
        ge=0,
        le=1,
        description="When set, a testSets gate requires the exported model's score on this set (the "
        "cross-validation metric) to reach it.",
    )

    @field_validator("uri")
    @classmethod
    def _local_folder(cls, value: str) -> str:
        if value.startswith(REMOTE_SCHEMES):
            raise ValueError("must be a local path or file:// (one folder per class)")
        return value


class EvaluationSpec(SpecModel):
    """Benchmarks beyond the held-out split."""

    test_sets: list[TestSetSpec] = Field(
        default_factory=list,
        max_length=8,
        description="Extra labelled folders evaluated by the exported model.",
    )

    @field_validator("test_sets")
    @classmethod
    def _unique_names(cls, value: list[TestSetSpec]) -> list[TestSetSpec]:
        repeated = repeated_names([test_set.name for test_set in value])
        if repeated:
            raise ValueError(f"names must be unique; repeated: {', '.join(repeated)}")
        return value


class OutputSpec(SpecModel):
    """Where the artifact is written."""

    uri: str | None = Field(
        None,
        description="Artifact destination: a local path or file:// (pvc:// on a cluster), or s3://<bucket>/"
        "<prefix> (written locally, then uploaded). Local runs default to runs/<name>.",
    )


class ServeSpec(SpecModel):
    """How the trained model may be served."""

    max_accuracy_drop: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Largest held-out accuracy drop (a fraction, 0.01 = one point) a server accepts from "
        "the int8 copy of the model (`crucible serve --quantize int8`); measured at export.",
    )


class TrainingRunSpec(SpecModel):
    """A TrainingRun: train one model with gates and export it when they pass."""

    seed: int = Field(
        42,
        ge=0,
        le=2**31 - 1,
        description="Seed for initialisation, batches and folds (data: dataset.splitSeed).",
    )
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    hyperparameters: HyperparametersSpec = Field(default_factory=HyperparametersSpec)
    gates: GatesSpec = Field(default_factory=GatesSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    serve: ServeSpec = Field(default_factory=ServeSpec)
