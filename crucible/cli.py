"""The `crucible` command. Each subcommand imports its heavy dependencies only when it runs, so
`crucible operator` and `crucible crds` never import torch."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from crucible import __version__

EXIT_INVALID = 2
EXIT_NOT_COMPARABLE = 1


def _local_output(explicit: str | None, spec_uri: str | None, name: str) -> Path:
    if explicit:
        return Path(explicit)
    if spec_uri:
        if spec_uri.startswith("file://"):
            return Path(spec_uri[len("file://") :])
        if "://" not in spec_uri:
            return Path(spec_uri)
    return Path("runs") / name


def _cmd_train(args: argparse.Namespace) -> int:
    from crucible.api.manifest import InvalidSpec, load_file
    from crucible.s3 import is_s3_uri, parse_s3_uri

    try:
        resource = load_file(args.file, expected_kind="TrainingRun")
        uri = resource.spec.output.uri  # type: ignore[attr-defined]
        # An s3:// output is written locally first, then uploaded (as a trainer Job does).
        remote = parse_s3_uri(uri, "spec.output.uri").uri if is_s3_uri(uri) else None
    except InvalidSpec as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    spec = resource.spec
    output = _local_output(args.output, uri, resource.name)
    from crucible.trainer.cli import run_and_report

    return run_and_report(
        spec,  # type: ignore[arg-type]
        resource.name,
        output,
        args.json,
        args.device,
        remote,
        restart=args.restart,
    )


def _cmd_compare(args: argparse.Namespace) -> int:
    from crucible.compare import NotComparable, RunUnreadable, compare, load_run, render

    try:
        comparison = compare(load_run(Path(args.run_a)), load_run(Path(args.run_b)))
    except RunUnreadable as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except NotComparable as error:
        print(f"error: {args.run_a} and {args.run_b} are {error}", file=sys.stderr)
        return EXIT_NOT_COMPARABLE
    print(render(comparison, args.alpha))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crucible",
        description="Train, evaluate, tune, deploy and promote models, with gates. Locally or on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"crucible {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="Run a TrainingRun locally, with its gates.")
    train.add_argument("-f", "--file", required=True, help="A TrainingRun YAML file.")
    train.add_argument(
        "--output",
        help="Output directory (default: spec.output.uri, else runs/<name>; with an s3:// spec.output.uri, "
        "the local copy of what is uploaded).",
    )
    train.add_argument("--json", action="store_true", help="Print the result JSON on stdout, no tables.")
    train.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="Where to train.")
    train.add_argument(
        "--restart",
        action="store_true",
        help="Start over: ignore the checkpoint a stopped run left in the output (by default it resumes).",
    )
    train.set_defaults(handler=_cmd_train)

    compare = commands.add_parser(
        "compare",
        help="Compare two exported runs side by side, with McNemar's exact test on their held-out "
        "predictions. Refuses runs on different data, classes or held-out splits.",
    )
    compare.add_argument("run_a", metavar="RUN_DIR", help="A run's output directory (holding model.json).")
    compare.add_argument("run_b", metavar="RUN_DIR", help="The run to compare it with.")
    compare.add_argument(
        "--alpha", type=float, default=0.05, help="Significance level of the test (default 0.05)."
    )
    compare.set_defaults(handler=_cmd_compare)

    for register in _optional_commands():
        register(commands)
    return parser


# Modules contributing subcommands: each defines `register(subparsers)` and imports nothing heavy
# at module level (torch, kopf), so `crucible --help` stays fast and `crucible operator` torch-free.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "crucible.server.command",
    "crucible.operator.command",
    "crucible.tuning.command",
    "crucible.console.command",
    "crucible.label_command",
)


def _optional_commands() -> list:
    return [importlib.import_module(name).register for name in SUBCOMMAND_MODULES]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_INVALID
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
