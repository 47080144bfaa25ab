"""`crucible operator` (run the operator) and `crucible crds` (print the CRDs).

Nothing heavy at module level: `crucible --help` must stay fast, and the operator never imports torch.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

EXIT_INVALID = 2
DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"


def register(commands: argparse._SubParsersAction) -> None:
    operator = commands.add_parser(
        "operator", help="Run the Kubernetes operator (TrainingRun -> Job, ModelDeployment -> servers)."
    )
    scope = operator.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="Watch this namespace (repeatable; globs)."
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="Watch every namespace (default).")
    operator.add_argument("--config", help="Operator configuration YAML (node pools, images, artifacts).")
    operator.add_argument("--kubeconfig", help="Use this kubeconfig (default: in-cluster, then $KUBECONFIG).")
    operator.add_argument(
        "--liveness",
        default=DEFAULT_LIVENESS,
        help="Liveness endpoint URL, or 'none' (default: %(default)s).",
    )
    operator.add_argument(
        "--peering",
        metavar="NAME",
        help="Coordinate replicas through kopf's peering object NAME: one works, the others stand by "
        "(default: standalone, exactly one replica).",
    )
    operator.add_argument("--verbose", action="store_true", help="Log every handler call.")
    operator.set_defaults(handler=_cmd_operator)

    crds = commands.add_parser("crds", help="Print the CustomResourceDefinitions (kubectl apply -f -).")
    crds.add_argument("--output-dir", help="Write one file per CRD into this folder instead.")
    crds.set_defaults(handler=_cmd_crds)


def operator_identity() -> str:
    """Who this operator is among its peers: the pod's name ($POD_ID, as the chart sets it), else
    user@host/start/random as kopf would make it, but with the numeric uid when the user has no passwd
    entry (images run as uid 65532 with none, where kopf's own getpass.getuser() raises KeyError)."""
    import datetime
    import getpass
    import os
    import secrets
    import socket

    pod = os.environ.get("POD_ID")
    if pod:
        return pod
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    started = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
    return f"{user}@{socket.gethostname()}/{started}/{secrets.token_hex(2)}"


def run_operator(
    namespaces: Sequence[str] = (),
    config_path: str | None = None,
    kubeconfig: str | None = None,
    liveness: str | None = DEFAULT_LIVENESS,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
    peering: str | None = None,
) -> None:
    """Run until stopped (a signal, or `stop_flag` when embedded in a thread). Blocks."""
    import asyncio

    import kopf

    import crucible.operator.main  # noqa: F401  (registers the handlers)
    from crucible.operator.config import load_config

    memo = kopf.Memo(config=load_config(config_path), kubeconfig=kubeconfig)
    # Without peering exactly one replica runs and no peering objects are needed. A peering name,
    # once given, makes kopf wait for its peering object: pass it only when asked for.
    peering_options = {"peering_name": peering, "standalone": False} if peering else {"standalone": True}
    operator = kopf.operator(
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        **peering_options,
        liveness_endpoint=liveness or None,
        memo=memo,
        identity=operator_identity(),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
    asyncio.run(operator)


def _cmd_operator(args: argparse.Namespace) -> int:
    import kopf

    from crucible.api.manifest import InvalidSpec
    from crucible.operator.config import load_config

    try:
        load_config(args.config)  # fail fast with the field named, before connecting anywhere
    except InvalidSpec as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    kopf.configure(verbose=args.verbose)
    liveness = None if args.liveness == "none" else args.liveness
    run_operator(args.namespace, args.config, args.kubeconfig, liveness, peering=args.peering)
    return 0


def _cmd_crds(args: argparse.Namespace) -> int:
    from crucible.api import crd

    if args.output_dir:
        for path in crd.write_all(Path(args.output_dir)):
            print(path)
    else:
        sys.stdout.write(crd.render_all())
    return 0
