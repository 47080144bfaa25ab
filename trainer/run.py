"""One training run, in order: data -> debug gate -> cross-validation gate -> baseline gate -> final
training (finalTraining gate) -> evaluation -> heldOut gate -> overfitting gate -> export. A failed gate
stops the run.

The primary dataset is split once into training and held-out; the images of `spec.dataset.sources`
join the training side only (sources.py), so the held-out split stays fixed across retrains on grown
data. A validation split carved from the training side drives early stopping, pruning and the per-epoch
figures, so the held-out split is touched once, by the exported model."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from crucible.api.result import Artifact, GateReport, Pruning, TrainResult
from crucible.api.trainingrun import TrainingRunSpec
from crucible.compare import encode_outcomes, fingerprints_of
from crucible.resources import available_cpus
from crucible.trainer import baselines, data_checks, export, onnx_export
from crucible.trainer.checkpoint import Checkpoint, run_key
from crucible.trainer.data import ImageData, curate, load_dataset, split
from crucible.trainer.early_stopping import EarlyStopping
from crucible.trainer.engine import (
    EpochStats,
    Evaluation,
    Precision,
    evaluate,
    fit,
    pick_device,
    seed_everything,
)
from crucible.trainer.folds import Fold, stratified_folds
from crucible.trainer.gates import (
    TrainingError,
    baseline_gate,
    cross_validation_gate,
    debug_gate,
    failure_reason,
    final_training_gate,
    held_out_gate,
    overfitting_gate,
    test_sets_gate,
)
from crucible.trainer.imaging import BACKGROUND
from crucible.trainer.metrics import Report
from crucible.trainer.models import build_model
from crucible.trainer.pipeline import Normalization, Pipeline, uses_augmentation
from crucible.trainer.progress import Reporter, SilentReporter
from crucible.trainer.publish import PublishError, publish
from crucible.trainer.report import write_report
from crucible.trainer.sources import LoadedSource, assemble_training_side
from crucible.trainer.test_sets import evaluate_test_sets


@dataclass
class RunContext:
    """Where a run writes and what it runs on."""

    name: str
    output_dir: Path
    device: str = "auto"
    artifact_uri: str | None = None
    termination_log: Path | None = None
    reporter: Reporter = field(default_factory=SilentReporter)
    # Called after each final-training epoch with the validation figures so far (never held-out), e.g.
    # to report intermediate values to a tuning study. An exception it raises (a pruned trial) ends the run.
    on_epoch: Callable[[int, dict[str, float]], None] | None = None
    # Ignore a checkpoint left in output_dir by a stopped run (by default the run resumes from it).
    restart: bool = False
    # A tuning trial: whether it could report to its study, asked once training is over (the result's
    # `pruning`).
    pruning: Callable[[], Pruning] | None = None


@dataclass
class _Progress:
    gates: dict[str, GateReport] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    confusion: object = None
    classes: list[str] = field(default_factory=list)
    dataset: dict = field(default_factory=dict)  # what the loader skipped (DatasetReport)
    checkpoint: Checkpoint | None = None
    per_class: dict | None = None
    sources: list[LoadedSource] = field(default_factory=list)


def configure_torch(device: torch.device) -> None:
    """Threads from the real CPU limit; deterministic kernels so a seed gives the same numbers.

    Ops without a deterministic kernel warn rather than fail: the debug gate's reproducibility check
    measures whether a run really repeats. cuBLAS needs its workspace fixed before its first use."""
    torch.set_num_threads(available_cpus())
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


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
    except torch.OutOfMemoryError as error:
        result = TrainResult(phase="Failed", reason=out_of_memory_reason(spec, error), gates=progress.gates)
    finally:
        context.reporter.close()
    if progress.dataset:
        result = result.model_copy(update={"dataset": progress.dataset})
    if progress.sources:
        result = result.model_copy(
            update={"sources": {source.name: source.result_entry() for source in progress.sources}}
        )
    if context.pruning is not None:
        result = result.model_copy(update={"pruning": context.pruning()})
    export.write_result_file(result, context.output_dir)
    folds = progress.gates.get("crossValidation")
    write_report(
        context.output_dir / export.REPORT_FILE,
        progress.history,
        folds.folds if folds else None,
        progress.confusion,
        _classes_of(spec, progress),
        progress.per_class,
        f"{context.name}: {result.phase}" + (f" ({result.reason})" if result.reason else ""),
    )
    # The termination message is written last: it must not say Succeeded before the artifact is
    # where its URI points.
    result = _published(result, context)
    export.write_result(result, context.output_dir, context.termination_log)
    if progress.checkpoint is not None:
        progress.checkpoint.discard()  # the run is over: a later run on this output starts afresh
    return result


def out_of_memory_reason(spec: TrainingRunSpec, error: BaseException) -> str:
    """The reason of a run the GPU ran out of memory for; it starts with `OutOfMemory:`, as the
    operator's reason for a container killed for memory does."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else "CUDA out of memory"
    return (
        f"OutOfMemory: {first_line[:300]}; lower spec.hyperparameters.batchSize (now "
        f"{spec.hyperparameters.batch_size}) or spec.dataset.imageSize (now {spec.dataset.image_size})"
    )


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
    return progress.classes or list(spec.dataset.classes)


def _failed(name: str, progress: _Progress) -> TrainResult:
    return TrainResult(
        phase="Failed", reason=failure_reason(name, progress.gates[name]), gates=progress.gates
    )


def _epoch_line(prefix: str, stats: EpochStats, evaluation: Evaluation | None = None) -> str:
    """One log line per epoch, e.g. `fold 2/5 epoch 3/8 loss 0.41 acc 0.88 212 img/s`."""
    speed = stats.images / max(stats.seconds, 1e-9)
    line = f"{prefix} loss {stats.loss:.4f} acc {stats.accuracy:.4f} {speed:.0f} img/s"
    if evaluation is not None:
        line += f" validation loss {evaluation.loss:.4f} acc {evaluation.accuracy:.4f}"
    return line


def _load(spec: TrainingRunSpec, data_seed: int, reporter: Reporter) -> ImageData:
    data = curate(load_dataset(spec.dataset, data_seed, available_cpus()), spec.dataset, data_seed)
    report = data.report
    if report.downloaded is not None:
        reporter.note(
            f"{spec.dataset.uri}: {report.downloaded} object(s) downloaded, {report.reused} already cached"
        )
    if report.bad_files:
        reporter.note(
            f"skipped {report.bad_files} unreadable file(s) "
            f"(spec.dataset.maxBadFiles {spec.dataset.max_bad_files}): " + ", ".join(report.bad_file_examples)
        )
    if report.ignored_folders:
        reporter.note(
            f"ignored {len(report.ignored_folders)} folder(s) not in spec.dataset.classes: "
            + ", ".join(report.ignored_folders[:10])
        )
    if len(data) < 4:
        raise TrainingError(f"dataset: only {len(data)} images after curation; need at least 4")
    return data


def _run_stages(
    spec: TrainingRunSpec,
    context: RunContext,
    device: torch.device,
    precision: Precision,
    progress: _Progress,
) -> TrainResult:
    reporter = context.reporter
    reporter.stage("Loading data", 1)
    # The data side is seeded by the dataset, not the run: runs with different seeds share their curated
    # data and held-out split, so their scores can be compared image by image.
    data_seed = spec.dataset.split_seed
    data = _load(spec, data_seed, reporter)
    report = data.report
    if report.bad_files or report.ignored_folders or report.downloaded is not None:
        progress.dataset = report.to_dict()  # only when there is something to say: the result stays small
    # The primary dataset alone decides the held-out split; the sources join the training side.
    primary_train, test_split = split(data, spec.dataset.test_fraction, data_seed)
    progress.classes = data.classes
    num_classes = len(data.classes)
    hp = spec.hyperparameters
    pipeline = Pipeline(
        spec.dataset.image_size,
        spec.dataset.resize_policy,
        hp.augmentation if uses_augmentation(hp.augmentation) else None,
        device,
        pretrained=bool(spec.model.pretrained_weights),
        eval_batch_size=hp.batch_size,
    )
    train_split, surveys, progress.sources = assemble_training_side(
        spec, primary_train, test_split, pipeline, reporter
    )
    # The validation split drives early stopping and pruning; the held-out split is evaluated once.
    fit_split, val_split = split(train_split, spec.dataset.validation_fraction, data_seed + 1)
    norm = pipeline.normalization(fit_split, spec.seed)
    data_key = data.fingerprint() + (f":{train_split.fingerprint()}" if spec.dataset.sources else "")
    checkpoint = Checkpoint(context.output_dir, run_key(spec, data_key, device))
    progress.checkpoint = checkpoint
    if not context.restart and checkpoint.resume():
        reporter.note(f"resuming from {checkpoint.path}")
    reporter.advance(
        f"{len(fit_split)} train / {len(val_split)} validation / {len(test_split)} held-out, "
        f"{num_classes} classes"
    )
    gates = spec.gates

    if gates.debug.enabled:
        reporter.stage("Debug gate", 1)
        if "debug" in checkpoint.state:
            progress.gates["debug"] = GateReport.model_validate(checkpoint.state["debug"])
        else:
            progress.gates["debug"] = debug_gate(
                spec, train_split, test_split, surveys, fit_split, pipeline, norm, precision
            )
            checkpoint.update(debug=progress.gates["debug"].model_dump())
        reporter.advance("debug gate " + ("passed" if progress.gates["debug"].passed else "FAILED"))
        if not progress.gates["debug"].passed:
            return _failed("debug", progress)

    metric = gates.cross_validation.metric
    cv_mean = None
    if gates.cross_validation.enabled:
        cv = gates.cross_validation
        folds = _folds(train_split, cv.folds, spec.seed)
        reporter.stage("Cross-validation", cv.folds * cv.epochs)
        done = checkpoint.state.get("cv", {}).get("scores", [])
        if done:
            reporter.note(f"folds 1-{len(done)}/{cv.folds} finished before the restart: not run again")
        progress.gates["crossValidation"] = cross_validation_gate(
            spec,
            train_split,
            folds,
            pipeline,
            precision,
            on_epoch=lambda fold, epoch, stats: reporter.advance(
                _epoch_line(f"fold {fold + 1}/{cv.folds} epoch {epoch + 1}/{cv.epochs}", stats)
            ),
            on_fold=lambda fold, score: reporter.note(f"fold {fold + 1}/{cv.folds}: {cv.metric} {score:.4f}"),
            resume=checkpoint.state.get("cv"),
            on_checkpoint=lambda state: checkpoint.update(cv=state),
        )
        if not progress.gates["crossValidation"].passed:
            return _failed("crossValidation", progress)
        cv_mean = progress.gates["crossValidation"].mean
        if gates.baseline.enabled:
            if "baseline" in checkpoint.state:
                progress.gates["baseline"] = GateReport.model_validate(checkpoint.state["baseline"])
            else:
                scores = baselines.cross_validate(
                    surveys[0].thumbnails, train_split.labels.numpy(), folds, num_classes, metric
                )
                means = {name: float(np.mean(values)) for name, values in scores.items()}
                progress.gates["baseline"] = baseline_gate(cv_mean, metric, means, gates.baseline)
                checkpoint.update(baseline=progress.gates["baseline"].model_dump())
            report = progress.gates["baseline"]
            reporter.note(f"baselines: {_shown(report.baselines)}; lift {report.lift:+.4f}")
            if not report.passed:
                return _failed("baseline", progress)

    reporter.stage("Final training", hp.epochs)
    seed_everything(spec.seed)
    model = build_model(
        spec.model.architecture, num_classes, spec.model.dropout, spec.model.pretrained_weights
    )
    model = model.to(device)
    stopper = EarlyStopping(hp.early_stopping, model) if hp.early_stopping else None
    # Workers per pass, as for training: one set of worker processes at a time.
    val_feed = pipeline.eval_feed(val_split, norm)

    def on_epoch(epoch, stats, evaluation) -> None:
        reporter.advance(_epoch_line(f"final epoch {epoch + 1}/{hp.epochs}", stats, evaluation))
        if context.on_epoch is not None:
            context.on_epoch(epoch + 1, epoch_figures(stats, evaluation))

    fitted = fit(
        model,
        pipeline.train_feed(fit_split, norm, hp.batch_size, spec.seed),
        hp,
        hp.epochs,
        precision,
        val=val_feed,
        num_classes=num_classes,
        on_epoch=on_epoch,
        resume=checkpoint.state.get("final"),
        on_checkpoint=lambda state: checkpoint.update(final=state),
        check_gradients=True,
        stopper=stopper,
    )
    progress.history = fitted.history
    progress.gates["finalTraining"] = final_training_gate(fitted.finite)
    if not progress.gates["finalTraining"].passed:
        return _failed("finalTraining", progress)
    if stopper is not None:
        stopper.restore(model)

    reporter.stage("Evaluation", 1)
    on_train = evaluate(model, pipeline.eval_feed(fit_split, norm), precision, num_classes)
    on_val = evaluate(model, val_feed, precision, num_classes)
    # The one time the held-out split is touched.
    held_out = evaluate(model, pipeline.eval_feed(test_split, norm), precision, num_classes)
    held_report = held_out.report()
    progress.confusion = held_report.confusion
    progress.per_class = held_report.per_class
    reporter.advance(f"held-out {metric} {held_out.score(metric):.4f}")
    metrics = {
        "accuracy": held_out.accuracy,
        "balancedAccuracy": held_report.balanced_accuracy,
        "macroF1": held_out.macro_f1,
        "loss": held_out.loss,
        **{f"top{k}Accuracy": v for k, v in held_report.top_k.items()},
        "expectedCalibrationError": held_report.calibration_error,
        "valLoss": on_val.loss,
        "valAccuracy": on_val.accuracy,
        "valBalancedAccuracy": on_val.score("balancedAccuracy"),
        "valMacroF1": on_val.macro_f1,
        "trainAccuracy": on_train.accuracy,
        "trainLoss": on_train.loss,
        "trainSeconds": fitted.train_seconds,
        "trainImagesPerSecond": fitted.images_seen / max(fitted.train_seconds, 1e-9),
        "trainImages": float(len(fit_split)),
        "validationImages": float(len(val_split)),
        "testImages": float(len(test_split)),
        "epochsTrained": float(len(fitted.history)),
    }
    if cv_mean is not None:
        metrics["cvMean"] = cv_mean
    if "baseline" in progress.gates:
        metrics["baselineLift"] = progress.gates["baseline"].lift

    train_survey, test_survey = surveys
    held_baselines = baselines.fit_and_score(
        np.concatenate([train_survey.thumbnails, test_survey.thumbnails]),
        np.concatenate([train_split.labels.numpy(), test_split.labels.numpy()]),
        np.arange(len(train_split)),
        np.arange(len(train_split), len(train_split) + len(test_split)),
        num_classes,
        metric,
    )
    if gates.overfitting.enabled:
        progress.gates["overfitting"] = overfitting_gate(
            on_train.accuracy, held_out.accuracy, gates.overfitting
        )
        if not progress.gates["overfitting"].passed:
            failed = _failed("overfitting", progress)
            failed.metrics = metrics
            return failed

    if gates.held_out.enabled:
        progress.gates["heldOut"] = held_out_gate(
            held_out.score(metric), metric, cv_mean, baselines.best(held_baselines), gates.held_out
        )
        if not progress.gates["heldOut"].passed:
            failed = _failed("heldOut", progress)
            failed.metrics = metrics
            return failed

    test_sets = evaluate_test_sets(spec, model, data.classes, pipeline, norm, precision)
    for result in test_sets:
        metrics[f"testSet.{result.spec.name}"] = result.report.score(metric)
    minimums = {r.spec.name: r.spec.min_score for r in test_sets if r.spec.min_score is not None}
    if minimums:
        scores = {r.spec.name: r.report.score(metric) for r in test_sets}
        progress.gates["testSets"] = test_sets_gate(scores, minimums, metric)
        if not progress.gates["testSets"].passed:
            failed = _failed("testSets", progress)
            failed.metrics = metrics
            return failed

    reporter.stage("Export", 1)
    sha256 = export.save_weights(model, context.output_dir)
    uri = context.artifact_uri or context.output_dir.resolve().as_uri()
    card = _model_card(spec, context, data, primary_train, norm, metrics, progress.gates, sha256)
    card |= {
        "trainingFingerprint": train_split.fingerprint(),
        "sources": [source.card_entry() for source in progress.sources],
        # Images per class in training, sources included: the server's drift signal compares its
        # predictions with it.
        "trainClassCounts": dict(zip(train_split.classes, train_split.class_counts(), strict=True)),
    }
    card |= {
        "heldOutFingerprint": test_split.fingerprint(),
        "evaluation": {
            "metric": metric,
            "heldOut": held_report.to_dict(data.classes),
            "baselines": {"heldOut": held_baselines, **_cv_baselines(progress.gates)},
            "testSets": {
                r.spec.name: {
                    "images": r.images,
                    "unknownClassImages": r.unknown,
                    **r.report.to_dict(data.classes),
                }
                for r in test_sets
            },
        },
        "predictionsFile": export.PREDICTIONS_FILE,
    }
    # The ONNX copy, checked against the network on the held-out images (read through the pipeline).
    held_out_feed = pipeline.eval_feed(test_split, norm)
    card |= onnx_export.export_checked(model, context.output_dir, held_out_feed, spec.serve.max_accuracy_drop)
    export.write_model_card(context.output_dir, card)
    export.write_predictions(
        context.output_dir,
        test_split.fingerprint(),
        held_out.labels,
        held_out.predictions,
        test_split.image_names(),
    )
    reporter.advance(uri)
    return TrainResult(
        phase="Succeeded",
        gates=progress.gates,
        metrics=metrics,
        artifact=Artifact(uri=uri, sha256=sha256),
        fingerprints=fingerprints_of(card),
        outcomes=encode_outcomes(held_out.labels, held_out.predictions),
        evaluation=_evaluation_summary(held_report, data.classes, progress.history),
    )


CURVES = ("trainLoss", "trainAccuracy", "valLoss", "valAccuracy")


def _evaluation_summary(held_report: Report, classes: list[str], history: list[dict]) -> dict:
    """The held-out evaluation in short, for the result and the TrainingRun's status (4 digits)."""
    per_class = {
        key: [round(float(value), 4) for value in held_report.per_class[key]]
        for key in ("precision", "recall", "f1")
    }
    curves = {
        key: [round(float(entry[key]), 4) for entry in history]
        for key in CURVES
        # A curve with a non-finite point is left out: status lists cannot hold null.
        if history and all(key in entry and math.isfinite(entry[key]) for entry in history)
    }
    summary = {
        "classes": list(classes),
        **per_class,
        "support": [int(value) for value in held_report.per_class["support"]],
        "confusion": held_report.confusion.tolist(),
    }
    if curves:
        summary["curves"] = {"epoch": [int(entry["epoch"]) for entry in history], **curves}
    return summary


def _folds(train_split: ImageData, folds: int, seed: int) -> list[Fold]:
    counts = train_split.class_counts()
    present = [count for count in counts if count > 0]
    if not present or min(present) < folds:
        # Reached only with the debug gate off; its smallestClass check says the same first.
        check = data_checks.smallest_class(counts, train_split.classes, folds)
        raise TrainingError(f"crossValidation: {check.message}")
    return stratified_folds(train_split.labels.numpy(), folds, seed)


def _shown(scores: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in scores.items())


def _cv_baselines(gates: dict[str, GateReport]) -> dict:
    report = gates.get("baseline")
    return {"crossValidation": report.baselines} if report is not None else {}


def epoch_figures(stats: EpochStats, evaluation: Evaluation) -> dict[str, float]:
    """What a tuning study sees after each final-training epoch: validation figures, never held-out."""
    return {
        "valAccuracy": evaluation.accuracy,
        "valBalancedAccuracy": evaluation.score("balancedAccuracy"),
        "valMacroF1": evaluation.macro_f1,
        "valLoss": evaluation.loss,
        "trainLoss": stats.loss,
        "trainAccuracy": stats.accuracy,
    }


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
        # The eval transform: how the server turns an uploaded picture into the model's input.
        "preprocess": {
            "resize": spec.dataset.resize_policy,
            "size": size,
            "alphaBackground": list(BACKGROUND),
            "exifTranspose": True,
        },
        "normalization": norm.to_dict(),
        "weights": {"file": export.WEIGHTS_FILE, "sha256": sha256},
        "sha256": sha256,
        "metrics": metrics,
        "gates": {name: report.model_dump(exclude_none=True) for name, report in gates.items()},
        "seed": spec.seed,
        "datasetFingerprint": data.fingerprint(),
        "dataset": data.report.to_dict(),
        # The primary's training split; trainingFingerprint covers the sources' images too.
        "trainFingerprint": train_split.fingerprint(),
        "versions": export.library_versions(),
        "createdAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "spec": spec.to_dict(),
    }


def elapsed_since(started: float) -> float:
    return time.perf_counter() - started
