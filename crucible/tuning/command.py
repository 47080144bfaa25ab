"""`crucible tune -f FILE`: run a TuningJob's search on this machine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def register(subparsers: argparse._SubParsersAction) -> None:
    tune = subparsers.add_parser(
        "tune",
        help="Run a TuningJob locally: a hyperparameter search whose trials are training runs.",
        description="Run a TuningJob's search on this machine. The study lives in OUTPUT/study.db: "
        "running the same command again resumes it.",
    )
    tune.add_argument("-f", "--file", required=True, help="A TuningJob YAML file.")
    tune.add_argument("--output", help="Output directory (default: runs/<name>).")
    tune.add_argument("--json", action="store_true", help="Print the result JSON on stdout, no progress.")
    tune.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Trials at once, each in its own process with its share of the CPUs (at most "
        "spec.parallelism; default 1: trials run in this process).",
    )
    tune.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="Where to train.")
    tune.set_defaults(handler=run_tune)


def _error(message: object) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_INVALID


def run_tune(args: argparse.Namespace) -> int:
    from crucible.api.manifest import InvalidSpec, load_file

    try:
        resource = load_file(args.file, expected_kind="TuningJob")
    except InvalidSpec as error:
        return _error(error)
    if args.workers < 1:
        return _error(f"--workers: must be at least 1 (got {args.workers})")
    spec = resource.spec
    output = Path(args.output) if args.output else Path("runs") / resource.name

    from crucible.trainer.cli import preflight
    from crucible.trainer.data import DatasetError

    try:
        preflight(spec.template, args.device)  # type: ignore[attr-defined]
    except (DatasetError, FileNotFoundError, ValueError) as error:
        return _error(str(error).replace("spec.", "spec.template.", 1))

    from crucible.tuning.display import RichDisplay, SilentDisplay, print_summary
    from crucible.tuning.local import SearchBusy, run_search
    from crucible.tuning.study import StudyMismatch

    display = SilentDisplay() if args.json else RichDisplay()
    try:
        summary = run_search(
            spec,  # type: ignore[arg-type]
            resource.name,
            output,
            workers=args.workers,
            device=args.device,
            display=display,
        )
    except (SearchBusy, StudyMismatch) as error:
        return _error(error)
    except KeyboardInterrupt:
        print(f"interrupted: run the same command again to resume the study in {output}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary, output)
    return EXIT_OK if summary["phase"] == "Succeeded" else EXIT_FAILED
