"""`crucible-train` (the trainer Job's entry point) and the shared code behind `crucible train`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from crucible.api.manifest import InvalidSpec, parse_spec
from crucible.api.result import Pruning, TrainResult
from crucible.api.trainingrun import TrainingRunSpec
from crucible.trainer.study_hook import StudyTrial, TrialPruned, hook_or_none

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def print_summary(result: TrainResult, output_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    table = Table(title="Gates", show_lines=False)
    for column in ("gate", "check", "value", "threshold", "passed"):
        table.add_column(column)
    for gate_name, gate in result.gates.items():
        for check_name, check in gate.checks.items():
            value = "—" if check.value is None else f"{check.value:.4g}"
            op = getattr(check, "op", "")
            mark = "[green]yes[/]" if check.passed else "[red]NO[/]"
            table.add_row(gate_name, check_name, value, f"{op} {check.threshold:g}", mark)
    console.print(table)
    if result.metrics:
        metrics = Table(title="Metrics")
        metrics.add_column("metric")
        metrics.add_column("value")
        for key, value in result.metrics.items():
            shown = "—" if value is None else f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
            metrics.add_row(key, shown)
        console.print(metrics)
    colour = "green" if result.phase == "Succeeded" else "red"
    # One line however long the reason (an upload error names the whole URI): easy to grep in a log.
    outcome = f"[bold {colour}]{result.phase}[/]" + (f": {result.reason}" if result.reason else "")
    console.print(outcome, soft_wrap=True)
    if result.artifact:
        console.print(f"artifact: {result.artifact.uri}  sha256 {result.artifact.sha256[:16]}…")
    console.print(f"report:   {output_dir / 'report.png'}")


def preflight(spec: TrainingRunSpec, device: str, artifact_uri: str | None = None) -> None:
    """Input errors a person can fix, found before any progress bar starts."""
    from crucible.trainer.engine import pick_device
    from crucible.trainer.publish import check_credentials
    from crucible.trainer.sources import check_sources

    check_sources(spec.dataset)
    pick_device(device)
    weights = spec.model.pretrained_weights
    if weights and not Path(weights).is_file():
        raise FileNotFoundError(f"spec.model.pretrainedWeights: no such file: {weights}")
    check_credentials(artifact_uri)


def run_and_report(
    spec: TrainingRunSpec,
    name: str,
    output_dir: Path,
    as_json: bool = False,
    device: str = "auto",
    artifact_uri: str | None = None,
    termination_log: Path | None = None,
    study_trial: StudyTrial | None = None,
    restart: bool = False,
) -> int:
    """Train, print the outcome, and return the exit code (0 ok, 1 gate or training failed, 2 invalid).

    With `study_trial`, the run is a trial of a tuning study: it reports every epoch and, pruned, ends
    Failed with `pruned: true` (exit 1, no model exported)."""
    from crucible.s3_transfer import S3Error
    from crucible.trainer import export
    from crucible.trainer.data import DatasetError
    from crucible.trainer.progress import SilentReporter
    from crucible.trainer.publish import remote_uri
    from crucible.trainer.run import RunContext, train

    reporter = SilentReporter()
    try:
        artifact_uri = remote_uri(artifact_uri, "--artifact-uri") or artifact_uri
        preflight(spec, device, artifact_uri)
        reporter = _reporter(as_json)
        context = RunContext(
            name, output_dir, device, artifact_uri, termination_log, reporter, restart=restart
        )
        study = hook_or_none(study_trial, spec.hyperparameters.epochs)
        if study is not None:
            context.on_epoch, context.pruning = study, study.report
        result = train(spec, context)
    except TrialPruned as pruned:
        result = TrainResult(phase="Failed", reason=str(pruned), pruned=True, pruning=Pruning(available=True))
        export.write_result(result, output_dir, termination_log)
    except (DatasetError, FileNotFoundError, ValueError, S3Error) as error:
        reporter.close()
        result = TrainResult(phase="Failed", reason=str(error))
        export.write_result(result, output_dir, termination_log)
        print(f"error: {error}", file=sys.stderr)
        if as_json:
            print(result.to_json())
        return EXIT_INVALID
    if as_json:
        print(json.dumps(json.loads(result.to_json()), indent=2))
    else:
        print_summary(result, output_dir)
    return EXIT_OK if result.phase == "Succeeded" else EXIT_FAILED


def _reporter(as_json: bool):
    """Bars on a terminal; plain lines otherwise (stdout in a pod, stderr when stdout holds the JSON)."""
    from crucible.trainer.progress import BarReporter, LineReporter

    if as_json:
        return LineReporter(sys.stderr)
    return BarReporter() if sys.stderr.isatty() else LineReporter(sys.stdout)


def _read_spec(path: str) -> TrainingRunSpec:
    """A spec from JSON or YAML: either the spec alone or a whole TrainingRun document."""
    import yaml

    try:
        document = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise InvalidSpec("--spec", f"no such file: {path}") from None
    except yaml.YAMLError as error:
        raise InvalidSpec("--spec", f"invalid JSON/YAML: {error}") from None
    if isinstance(document, dict) and "kind" in document:
        document = document.get("spec")
    return parse_spec("TrainingRun", document)  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crucible-train",
        description="Run one TrainingRun spec with its gates (the trainer Job's command).",
    )
    parser.add_argument(
        "--spec", required=True, help="Spec file: JSON or YAML, the spec or a whole TrainingRun."
    )
    parser.add_argument("--name", default="model", help="Run name, recorded in model.json.")
    parser.add_argument("--output", required=True, help="Directory for the artifact and result.json.")
    parser.add_argument(
        "--artifact-uri",
        help="URI to record for the artifact (default: file:// of --output). An s3://<bucket>/<prefix> "
        "URI: the files written to --output are uploaded there (credentials from AWS_* variables).",
    )
    parser.add_argument(
        "--termination-log",
        type=Path,
        help="Where to write the result (default /dev/termination-log when it exists).",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", action="store_true", help="Print the result JSON on stdout.")
    parser.add_argument(
        "--restart",
        action="store_true",
        help="Start over: ignore the checkpoint a stopped run left in --output (by default it resumes).",
    )
    study = parser.add_argument_group("tuning trial", "Report to a study and stop when it prunes the run.")
    study.add_argument("--study-storage", help="The study's gRPC storage proxy: grpc://host:port.")
    study.add_argument("--study-name", help="The study this run is a trial of.")
    study.add_argument("--trial-number", type=int, help="This run's trial number in the study.")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        spec = _read_spec(args.spec)
        study_trial = _study_trial(args)
    except (InvalidSpec, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    return run_and_report(
        spec,
        args.name,
        Path(args.output),
        args.json,
        args.device,
        args.artifact_uri,
        args.termination_log,
        study_trial,
        args.restart,
    )


def _study_trial(args: argparse.Namespace) -> StudyTrial | None:
    """The three study flags go together; a malformed address is refused before training starts."""
    given = [args.study_storage, args.study_name, args.trial_number]
    if all(value is None for value in given):
        return None
    if any(value is None for value in given):
        raise ValueError("--study-storage, --study-name and --trial-number go together")
    trial = StudyTrial(args.study_storage, args.study_name, args.trial_number)
    trial.address()
    return trial


if __name__ == "__main__":
    raise SystemExit(main())
