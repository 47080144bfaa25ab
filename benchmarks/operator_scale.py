"""How the operator copes with many TrainingRuns applied at once, on the emulator and on a real API server.

The real operator (`crucible operator`, in its own process) runs against
- the emulated Kubernetes API of the tests, whose test kubelet finishes each trainer Job at once
  (time until every run has its Job and until every run has Succeeded), and
- a real control plane (the envtest binaries in $KUBEBUILDER_ASSETS or .envtest/bin: etcd,
  kube-apiserver with RBAC and OwnerReferencesPermissionEnforcement on, kube-controller-manager,
  kube-scheduler), the operator logged in as the chart's ServiceAccount bound to the chart's
  ClusterRole; the real scheduler places the trainer pods on the test Nodes, the test kubelet
  (tests/operator/node_agent.py) finishes each at once, the real Job controller completes the Jobs.
Prints, side by side, the time until every run has its Job and until every run has Succeeded, the
create-to-Job latency (p50, p95) and the operator process's peak memory (RSS high-water mark) and CPU
time.

    .venv/bin/python benchmarks/operator_scale.py [--runs 500] [--api emulator|real|both]

The API server (or the emulator) shares this machine's CPUs with the operator and the client creating
the runs, so the figures are an upper bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kmock  # noqa: E402

from tests.operator.fake_cluster import NAMESPACE, Cluster, write_kubeconfig  # noqa: E402
from tests.operator.fake_kubelet import FakeKubelet  # noqa: E402

SPEC = {
    "model": {"architecture": "tiny_cnn"},
    "dataset": {"source": "digits", "imageSize": 16},
    # Small requests, so the scheduler's fit on the test Nodes is not what the figures measure.
    "resources": {"cpu": "100m", "memory": "256Mi"},
}


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def wait_for(check, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.25)
    return time.monotonic()


def start_operator(workdir: Path, kubeconfig: Path, namespace: str) -> subprocess.Popen:
    config = workdir / "operator.yaml"
    config.write_text("artifacts:\n  claim: artifacts\n")
    command = [sys.executable, "-m", "crucible", "operator", "--namespace", namespace]
    command += ["--kubeconfig", str(kubeconfig), "--config", str(config), "--liveness", "none"]
    log = (workdir / "operator.log").open("w")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def stop_operator(operator: subprocess.Popen) -> None:
    operator.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        operator.wait(30)


async def on_emulator(runs: int, timeout: float) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="crucible-scale-"))
    async with Cluster() as cluster, kmock.Server(cluster):
        cluster.declare_builtins_and_crds()
        url = str(cluster.url).rstrip("/")
        kubeconfig = write_kubeconfig(workdir / "kubeconfig", url)
        kubelet = FakeKubelet(url, workdir / "node", instant=True)
        kubelet_task = asyncio.create_task(kubelet.run())
        await cluster.bound_claim("artifacts")
        operator = start_operator(workdir, kubeconfig, NAMESPACE)
        try:
            # The operator is up once it watches TrainingRuns.
            await wait_for(
                lambda: any("trainingruns" in str(r.url) and r.params.get("watch") for r in cluster.requests),
                60,
                "the operator to start",
            )
            started = time.monotonic()
            names = [f"run-{index:04d}" for index in range(runs)]
            await asyncio.gather(*(cluster.create_resource("TrainingRun", name, SPEC) for name in names))
            applied = time.monotonic() - started

            def job_times() -> dict[str, float]:
                return {
                    name: cluster.created_at[("jobs", NAMESPACE, f"{name}-train")]
                    for name in names
                    if ("jobs", NAMESPACE, f"{name}-train") in cluster.created_at
                }

            all_jobs = await wait_for(lambda: len(job_times()) == runs, timeout, "every Job")

            def succeeded() -> int:
                runs_now = cluster.objects_of("crucible.dev/v1alpha1/trainingruns")
                return sum(
                    1 for body in runs_now.values() if (body.get("status") or {}).get("phase") == "Succeeded"
                )

            all_done = await wait_for(lambda: succeeded() == runs, timeout, "every run to succeed")
            jobs = job_times()
            latencies = [jobs[name] - cluster.created_at[("trainingruns", NAMESPACE, name)] for name in names]
            peak = peak_rss_mib(operator.pid)
            busy = cpu_seconds(operator.pid)
        finally:
            stop_operator(operator)
            await kubelet.stop()
            kubelet_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await kubelet_task

    return {
        "applied": applied,
        "all_jobs": all_jobs - started,
        "p50": statistics.median(latencies),
        "p95": percentile(latencies, 0.95),
        "all_succeeded": all_done - started,
        "peak_rss": peak,
        "cpu": busy,
        "requests": len(cluster.requests),
    }


def wait_established(api, timeout: float = 30) -> None:
    from tests.cluster.kube import get_json

    deadline = time.monotonic() + timeout
    names = ("trainingruns", "tuningjobs", "modeldeployments")
    while time.monotonic() < deadline:
        crds = [
            get_json(api, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}.crucible.dev")
            for n in names
        ]
        conditions = [c for crd in crds for c in (crd.get("status") or {}).get("conditions") or []]
        if sum(1 for c in conditions if c["type"] == "Established" and c["status"] == "True") == len(names):
            return
        time.sleep(0.2)
    raise SystemExit("the CRDs did not become Established")


def run_kubelet(kubeconfig: Path, workdir: Path, ready: threading.Event, stop: threading.Event) -> None:
    """The test kubelet, in a thread with its own event loop: registers the Nodes of the `cpu` and `gpu`
    pools, makes the artifacts claim (bound, as a provisioner would), finishes every trainer pod at once."""
    from tests.operator.kube_api import KubeApi
    from tests.operator.node_agent import NodeAgent, register_nodes
    from tests.operator.real_cluster import RealCluster

    async def serve() -> None:
        api = KubeApi(kubeconfig)
        try:
            await register_nodes(api)
            await RealCluster(api, NAMESPACE).bound_claim("artifacts", workdir / "volumes" / "artifacts")
            agent = NodeAgent(api, NAMESPACE, workdir, instant=True)
            await agent.start()
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.2)
            await agent.stop()
        finally:
            await api.close()

    asyncio.run(serve())


def on_real_api_server(runs: int, timeout: float) -> dict[str, float]:
    """The same load on a real kube-apiserver, the operator logged in as the chart's ServiceAccount."""
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client, watch

    from tests.cluster.controlplane import start_control_plane
    from tests.cluster.kube import apply
    from tests.packaging.chart import of_kind, render

    workdir = Path(tempfile.mkdtemp(prefix="crucible-scale-real-"))
    plane = start_control_plane(workdir / "control-plane")
    plane.start_controllers()
    operator = None
    kubelet_ready, stop = threading.Event(), threading.Event()
    try:
        admin = plane.api_client()
        for path in sorted((ROOT / "crds").glob("*.yaml")):
            import yaml

            apply(admin, yaml.safe_load(path.read_text()))
        wait_established(admin)
        (role,) = [r for r in of_kind(render({}), "ClusterRole") if r["rules"]]
        apply(admin, role)
        core = client.CoreV1Api(admin)
        core.create_namespace({"metadata": {"name": "crucible-system"}})  # NAMESPACE is "default"
        kubeconfig = plane.service_account_kubeconfig(
            "crucible-system", "crucible", role["metadata"]["name"], workdir / "operator.kubeconfig"
        )
        kubelet = threading.Thread(
            target=run_kubelet, args=(plane.kubeconfig, workdir / "node", kubelet_ready, stop), daemon=True
        )
        kubelet.start()
        if not kubelet_ready.wait(60):
            raise SystemExit("the test kubelet did not start")
        job_seen: dict[str, float] = {}
        succeeded: dict[str, float] = {}

        def watch_jobs() -> None:
            batch = client.BatchV1Api(plane.api_client())
            stream = watch.Watch()
            for event in stream.stream(batch.list_namespaced_job, NAMESPACE, timeout_seconds=int(timeout)):
                if event["type"] == "ADDED":
                    job_seen.setdefault(event["object"].metadata.name, time.monotonic())
                if stop.is_set() or len(job_seen) >= runs:
                    stream.stop()

        threading.Thread(target=watch_jobs, daemon=True).start()
        operator = start_operator(workdir, kubeconfig, NAMESPACE)
        time.sleep(5)  # the operator logs in and starts its watches
        custom = client.CustomObjectsApi(admin)
        created: dict[str, float] = {}

        def create(name: str) -> None:
            body = {"apiVersion": "crucible.dev/v1alpha1", "kind": "TrainingRun"}
            body |= {"metadata": {"name": name}, "spec": SPEC}
            custom.create_namespaced_custom_object(
                "crucible.dev", "v1alpha1", NAMESPACE, "trainingruns", body
            )
            created[name] = time.monotonic()

        names = [f"run-{index:04d}" for index in range(runs)]
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, names))
        applied = time.monotonic() - started
        deadline = started + timeout
        reader = client.CustomObjectsApi(plane.api_client())
        while len(job_seen) < runs or len(succeeded) < runs:
            # Polled (about once a second), not watched: the phase is read from one list of every run.
            listed = reader.list_namespaced_custom_object(
                "crucible.dev", "v1alpha1", NAMESPACE, "trainingruns"
            )
            for body in listed["items"]:
                if (body.get("status") or {}).get("phase") == "Succeeded":
                    succeeded.setdefault(body["metadata"]["name"], time.monotonic())
            if time.monotonic() > deadline or operator.poll() is not None:
                raise SystemExit(
                    f"real API server: {len(job_seen)} Jobs and {len(succeeded)} Succeeded of {runs} "
                    f"after {timeout:.0f} s"
                )
            time.sleep(1)
        latencies = [job_seen[f"{name}-train"] - created[name] for name in names]
        return {
            "applied": applied,
            "all_jobs": max(job_seen.values()) - started,
            "p50": statistics.median(latencies),
            "p95": percentile(latencies, 0.95),
            "all_succeeded": max(succeeded.values()) - started,
            "peak_rss": peak_rss_mib(operator.pid),
            "cpu": cpu_seconds(operator.pid),
            "requests": float("nan"),
        }
    finally:
        stop.set()
        if operator is not None:
            stop_operator(operator)
        plane.stop()


ROWS = [
    ("applied", "TrainingRuns applied (s)", "{:.2f}"),
    ("all_jobs", "time until all have Jobs (s)", "{:.2f}"),
    ("p50", "create-to-Job p50 (s)", "{:.2f}"),
    ("p95", "create-to-Job p95 (s)", "{:.2f}"),
    ("all_succeeded", "time until all Succeeded (s)", "{:.2f}"),
    ("peak_rss", "operator peak RSS (MiB)", "{:.0f}"),
    ("cpu", "operator CPU time (s)", "{:.1f}"),
    ("requests", "API requests served", "{:.0f}"),
]


def main(runs: int, timeout: float, api: str) -> None:
    results: dict[str, dict[str, float]] = {}
    if api in ("emulator", "both"):
        results["emulator"] = asyncio.run(on_emulator(runs, timeout))
    if api in ("real", "both"):
        results["real API server"] = on_real_api_server(runs, timeout)
    print(f"{runs} TrainingRuns applied at once")
    print(f"{'':32}" + "".join(f"{name:>18}" for name in results))
    for key, title, form in ROWS:
        cells = [
            form.format(figures[key]) if figures[key] == figures[key] else "n/a"
            for figures in results.values()
        ]
        print(f"{title:32}" + "".join(f"{cell:>18}" for cell in cells))
    if len(results) == 2:
        emulator, real = results.values()
        print(f"real / emulator, time until all have Jobs: {real['all_jobs'] / emulator['all_jobs']:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="TrainingRuns to apply at once.")
    parser.add_argument("--timeout", type=float, default=600, help="Give up after this many seconds.")
    parser.add_argument("--api", choices=("emulator", "real", "both"), default="both")
    arguments = parser.parse_args()
    main(arguments.runs, arguments.timeout, arguments.api)
