"""`crucible console`: the read-only web console, over a local runs/ directory or a cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_INVALID = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    console = subparsers.add_parser(
        "console",
        help="Serve the read-only web console: runs, gates, trials, canaries.",
        description="Serve read-only pages for TrainingRuns, TuningJobs and ModelDeployments: from a "
        "local directory of `crucible train` / `crucible tune` outputs (--runs), or from a cluster "
        "through the kubeconfig or the pod's service account (the default).",
    )
    console.add_argument("--runs", help="A local runs/ directory (e.g. runs); without it, read the cluster.")
    console.add_argument(
        "--namespace",
        help="Cluster: show this namespace only (default: every namespace the credentials may list).",
    )
    console.add_argument(
        "--kubeconfig", help="Cluster: a kubeconfig file (default: in-cluster, then ~/.kube)."
    )
    console.add_argument("--context", help="Cluster: the kubeconfig context to use.")
    console.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    console.add_argument("--port", type=int, default=8080, help="Port to listen on (default 8080).")
    console.add_argument(
        "--root-path",
        default="",
        help="The path prefix a proxy serves the console under, e.g. /console (default: none).",
    )
    console.add_argument(
        "--refresh-seconds",
        type=float,
        default=2.0,
        help="How often a page showing something that runs refreshes itself (default 2).",
    )
    console.set_defaults(handler=run_console)


def build_source(args: argparse.Namespace):
    """The source the options name; ValueError or FileNotFoundError with a message for the person."""
    if args.runs:
        from crucible.console.local import LocalSource

        return LocalSource(Path(args.runs))
    from crucible.console.cluster import ClusterSource

    return ClusterSource.connect(args.kubeconfig, args.context, args.namespace)


def run_console(args: argparse.Namespace) -> int:
    if args.refresh_seconds <= 0:
        print(f"error: --refresh-seconds: must be more than 0 (got {args.refresh_seconds})", file=sys.stderr)
        return EXIT_INVALID
    try:
        source = build_source(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    import uvicorn

    from crucible.console.app import create_app

    print(f"console: {source.description} at http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    app = create_app(source, args.refresh_seconds)
    uvicorn.run(app, host=args.host, port=args.port, root_path=args.root_path, log_level="warning")
    return 0
