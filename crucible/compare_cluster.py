"""`crucible compare` by TrainingRun names on a cluster (thin I/O around crucible.compare).

Both runs are read through the Kubernetes API. Their artifacts are read where this machine can reach
them (a file:// or plain-path artifact on a shared disk); otherwise the comparison uses what their
statuses carry (fingerprints, gates, metrics, the per-class summary and the held-out outcome bits),
and the output says so. pvc:// and s3:// artifacts are never fetched from here.
"""

from __future__ import annotations

from pathlib import Path

from crucible.compare import MODEL_FILE, Comparison, compare, compare_statuses, load_run

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def artifact_dir(run: dict) -> Path | None:
    """The run's artifact directory when it is a readable path here, else None."""
    uri = (((run.get("status") or {}).get("artifact")) or {}).get("uri") or ""
    if uri.startswith("file://"):
        path = Path(uri[len("file://") :])
    elif uri and "://" not in uri:
        path = Path(uri)
    else:
        return None
    return path if (path / MODEL_FILE).is_file() else None


def compare_runs(run_a: dict, run_b: dict) -> Comparison:
    """From both artifacts when both are reachable here, else from both statuses (with a note)."""
    directories = [artifact_dir(run) for run in (run_a, run_b)]
    if directories[0] is not None and directories[1] is not None:
        return compare(load_run(directories[0]), load_run(directories[1]))
    unreachable = [
        f"{run['metadata']['name']} ({((run.get('status') or {}).get('artifact') or {}).get('uri', 'none')})"
        for run, directory in zip((run_a, run_b), directories, strict=True)
        if directory is None
    ]
    note = (
        f"From the TrainingRuns' status: the artifacts of {', '.join(unreachable)} are not reachable from "
        "here, so per-class figures come from status.evaluation and the test from status.outcomes."
    )
    return compare_statuses(run_a, run_b, note)


def default_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The kubeconfig context's namespace (or the pod's, in a cluster), else `default`."""
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError):
        if IN_CLUSTER_NAMESPACE.is_file():
            return IN_CLUSTER_NAMESPACE.read_text().strip()
        return "default"
    chosen = next((item for item in contexts if item["name"] == context), active) if context else active
    return ((chosen or {}).get("context") or {}).get("namespace") or "default"


def read_runs(
    names: list[str], namespace: str | None, kubeconfig: str | None, context: str | None
) -> list[dict]:
    """The TrainingRuns by name, in `namespace` (default: the context's). NotFound names the missing
    one; ValueError when no cluster can be reached."""
    from crucible.console.cluster import ClusterSource

    where = namespace or default_namespace(kubeconfig, context)
    source = ClusterSource.connect(kubeconfig, context, where)
    return [source.get("TrainingRun", where, name) for name in names]
