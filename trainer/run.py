"""One training run, in order: data -> debug gate -> cross-validation gate -> final training ->
held-out evaluation -> overfitting gate -> export. A failed gate stops the run."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from crucible.api.result import Artifact, GateReport, TrainResult
from crucible.api.trainingrun import TrainingRunSpec
from crucible.resources import available_cpus
from crucible.trainer import export, onnx_export
from crucible.trainer.data import ImageData, Normalization, curate, load_dataset, split
from crucible.trainer.engine import Precision, evaluate, fit, pick_device, seed_everything
from crucible.trainer.gates import (
    TrainingError,
    cross_validation_gate,
    debug_gate,
    failure_reason,
    overfitting_gate,
)
from crucible.trainer.models import build_model
from crucible.trainer.progress import Reporter, SilentReporter
from crucible.trainer.publish import PublishError, publish
from crucible.trainer.report import confusion_matrix, write_report


@dataclass
class RunContext:
    """Where a run writes and what it runs on."""

    name: str
    output_dir: Path
    device: str = "auto"
    artifact_uri: str | None = None
    termination_log: Path | None = None
    reporter: Reporter = field(default_factory=SilentReporter)
    # Called after each final-training epoch with the held-out figures so far, e.g. to report
    # intermediate values to a tuning study. An exception it raises (a pruned trial) ends the run.
    on_epoch: Callable[[int, dict[str, float]], None] | None = None


@dataclass
class _Progress:
    gates: dict[str, GateReport] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    confusion: object = None


def configure_torch(device: torch.device) -> None:
    """Threads from the real CPU limit; deterministic kernels so a seed gives the same numbers."""
    torch.set_num_threads(available_cpus())
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def train(spec: TrainingRunSpec, context: RunContext) -> TrainResult:
    """Run every stage; always returns a result (and writes it), Succeeded or Failed."""
    device = pick_device(context.device)
    configure_torch(device)
    precision = Precision.for_device(device)
    progress = _Progress()
    try:
        result = _run_stages(spec, context, device, precision, progress)
    except TrainingError as error:
        result = TrainResult(phase="Failed", reason=str(error), gates=progress.gates)
    finally:
        context.reporter.close()
    export.write_result_file(result, context.output_dir)
    folds = progress.gates.get("crossValidation")
    write_report(
        context.output_dir / export.REPORT_FILE,
        progress.history,
        folds.folds if folds else None,
        progress.confusion,
        _classes_of(spec, progress),
        f"{context.name}: {result.phase}" + (f" ({result.reason})" if result.reason else ""),
    )
    # The termination message is written last: it must not say Succeeded before the artifact is
    # where its URI points.
    result = _published(result, context)
    export.write_result(result, context.output_dir, context.termination_log)
    return result


def _published(result: TrainResult, context: RunContext) -> TrainResult:
    """The result once the run's files are where context.artifact_uri says; a failed upload fails the
    run, so a status never points at an artifact that is not there."""
    try:
        publish(context.output_dir, context.artifact_uri, result.phase == "Succeeded")
    except PublishError as error:
        reason = f"{result.reason}; {error}" if result.phase == "Failed" else str(error)
        return TrainResult(phase="Failed", reason=reason, gates=result.gates, metrics=result.metrics)
    return result


def _classes_of(spec: TrainingRunSpec, progress: _Progress) -> list[str]:
    return getattr(progress, "classes", None) or list(spec.dataset.classes)


def _failed(name: str, progress: _Progress) -> TrainResult:
    return TrainResult(
        phase="Failed", reason=failure_reason(name, progress.gates[name]), gates=progress.gates
    )


def _run_stages(
    spec: TrainingRunSpec,
    context: RunContext,
    device: torch.device,
    precision: Precision,
    progress: _Progress,
) -> TrainResult:
    reporter = context.reporter
    reporter.stage("Loading data", 1)
    data = curate(load_dataset(spec.dataset, spec.seed), spec.dataset, spec.seed)
    if len(data) < 4:
        raise TrainingError(f"dataset: only {len(data)} images after curation; need at least 4")
    train_split, test_split = split(data, spec.dataset.test_fraction, spec.seed)
    progress.classes = data.classes  # type: ignore[attr-defined]
    norm = Normalization.of(train_split.images)
    x_train, y_train = norm.apply(train_split.images).to(device), train_split.labels.to(device)
    x_test, y_test = norm.apply(test_split.images).to(device), test_split.labels.to(device)
    reporter.advance(f"{len(train_split)} train / {len(test_split)} held-out, {len(data.classes)} classes")

    gates = spec.gates
    if gates.debug.enabled:
        reporter.stage("Debug gate", 1)
        progress.gates["debug"] = debug_gate(spec, train_split, x_train, precision)
        reporter.advance("passed" if progress.gates["debug"].passed else "FAILED")
        if not progress.gates["debug"].passed:
            return _failed("debug", progress)

    if gates.cross_validation.enabled:
        cv = gates.cross_validation
        reporter.stage("Cross-validation", cv.folds * cv.epochs)
        progress.gates["crossValidation"] = cross_validation_gate(
            spec,
            train_split,
            device,
            precision,
            on_epoch=reporter.advance,
            on_fold=lambda fold, score: reporter.note(
                f"  fold {fold + 1}/{cv.folds}: {cv.metric} {score:.4f}"
            ),
        )
        if not progress.gates["crossValidation"].passed:
            return _failed("crossValidation", progress)

    hp = spec.hyperparameters
    reporter.stage("Final training", hp.epochs)
    generator = seed_everything(spec.seed)
    num_classes = len(data.classes)
    model = build_model(
        spec.model.architecture, num_classes, spec.model.dropout, spec.model.pretrained_weights
    )
    model = model.to(device)

    def on_epoch(epoch, stats, evaluation) -> None:
        reporter.advance(f"loss {stats.loss:.4f}  held-out acc {evaluation.accuracy:.4f}")
        if context.on_epoch is not None:
            figures = {"accuracy": evaluation.accuracy, "macroF1": evaluation.macro_f1}
            figures |= {"loss": evaluation.loss, "trainLoss": stats.loss, "trainAccuracy": stats.accuracy}
            context.on_epoch(epoch + 1, figures)

    fitted = fit(
        model,
        x_train,
        y_train,
        hp,
        hp.epochs,
        generator,
        precision,
        val=(x_test, y_test),
        num_classes=num_classes,
        on_epoch=on_epoch,
    )
    progress.history = fitted.history

    reporter.stage("Evaluation", 1)
    on_train = evaluate(model, x_train, y_train, precision, num_classes)
    held_out = evaluate(model, x_test, y_test, precision, num_classes)
    progress.confusion = confusion_matrix(held_out.predictions, y_test.tolist(), num_classes)
    reporter.advance(f"held-out accuracy {held_out.accuracy:.4f}")
    metrics = {
        "accuracy": held_out.accuracy,
        "macroF1": held_out.macro_f1,
        "loss": held_out.loss,
        "trainAccuracy": on_train.accuracy,
        "trainLoss": on_train.loss,
        "trainSeconds": fitted.train_seconds,
        "trainImagesPerSecond": fitted.images_seen / max(fitted.train_seconds, 1e-9),
        "trainImages": float(len(train_split)),
        "testImages": float(len(test_split)),
    }
    if spec.gates.cross_validation.enabled:
        metrics["cvMean"] = progress.gates["crossValidation"].mean or 0.0

    if gates.overfitting.enabled:
        progress.gates["overfitting"] = overfitting_gate(
            on_train.accuracy, held_out.accuracy, gates.overfitting
        )
        if not progress.gates["overfitting"].passed:
            failed = _failed("overfitting", progress)
            failed.metrics = metrics
            return failed

    reporter.stage("Export", 1)
    sha256 = export.save_weights(model, context.output_dir)
    uri = context.artifact_uri or context.output_dir.resolve().as_uri()
    export.write_model_card(
        context.output_dir,
        _model_card(spec, context, data, train_split, norm, metrics, progress.gates, sha256)
        | onnx_export.export_checked(model, context.output_dir, x_test, y_test, spec.serve.max_accuracy_drop),
    )
    reporter.advance(uri)
    return TrainResult(
        phase="Succeeded", gates=progress.gates, metrics=metrics, artifact=Artifact(uri=uri, sha256=sha256)
    )


def _model_card(
    spec: TrainingRunSpec,
    context: RunContext,
    data: ImageData,
    train_split: ImageData,
    norm: Normalization,
    metrics: dict,
    gates: dict[str, GateReport],
    sha256: str,
) -> dict:
    size = spec.dataset.image_size
    return {
        "name": context.name,
        "architecture": spec.model.architecture,
        "classes": data.classes,
        "numClasses": len(data.classes),
        "dropout": spec.model.dropout,
        "input": {"shape": [3, size, size], "scale": "pixels / 255", "layout": "NCHW", "colorMode": "RGB"},
        "normalization": norm.to_dict(),
        "weights": {"file": export.WEIGHTS_FILE, "sha256": sha256},
        "sha256": sha256,
        "metrics": metrics,
        "gates": {name: report.model_dump(exclude_none=True) for name, report in gates.items()},
        "seed": spec.seed,
        "datasetFingerprint": data.fingerprint(),
        "trainFingerprint": train_split.fingerprint(),
        "versions": export.library_versions(),
        "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "spec": spec.to_dict(),
    }


def elapsed_since(started: float) -> float:
    return time.perf_counter() - started
