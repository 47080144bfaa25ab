"""How the operator copes with many TrainingRuns applied at once.

The real operator (`crucible operator`, in its own process) runs against the emulated Kubernetes API
of the tests, whose test kubelet finishes each trainer Job at once. Prints the time until every run
has its Job, the create-to-Job latency (p50, p95), the time until every run has Succeeded, and the
operator process's peak memory (RSS high-water mark).

    .venv/bin/python benchmarks/operator_scale.py [--runs 500]

The emulator shares this machine's CPUs with the operator, so the figures are an upper bound.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kmock  # noqa: E402

from tests.operator.fake_cluster import NAMESPACE, Cluster, write_kubeconfig  # noqa: E402
from tests.operator.fake_kubelet import FakeKubelet  # noqa: E402

SPEC = {"model": {"architecture": "tiny_cnn"}, "dataset": {"source": "digits", "imageSize": 16}}


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


async def main(runs: int, timeout: float) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="crucible-scale-"))
    async with Cluster() as cluster, kmock.Server(cluster):
        cluster.declare_builtins_and_crds()
        url = str(cluster.url).rstrip("/")
        kubeconfig = write_kubeconfig(workdir / "kubeconfig", url)
        config = workdir / "operator.yaml"
        config.write_text("artifacts:\n  claim: artifacts\n")
        kubelet = FakeKubelet(url, workdir / "node", instant=True)
        kubelet_task = asyncio.create_task(kubelet.run())
        command = [sys.executable, "-m", "crucible", "operator", "--namespace", NAMESPACE]
        command += ["--kubeconfig", str(kubeconfig), "--config", str(config), "--liveness", "none"]
        log = (workdir / "operator.log").open("w")
        operator = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
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
            operator.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                operator.wait(30)
            await kubelet.stop()
            kubelet_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await kubelet_task

    print(f"TrainingRuns applied at once:     {runs} (in {applied:.2f} s)")
    print(f"time until all have Jobs:         {all_jobs - started:.2f} s")
    p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
    print(f"create-to-Job latency p50 / p95:  {p50:.2f} s / {p95:.2f} s")
    print(f"time until all have Succeeded:    {all_done - started:.2f} s")
    print(f"operator peak memory (RSS):       {peak:.0f} MiB")
    print(f"operator CPU time (user+system):  {busy:.1f} s")
    print(f"API requests served:              {len(cluster.requests)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="TrainingRuns to apply at once.")
    parser.add_argument("--timeout", type=float, default=600, help="Give up after this many seconds.")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.timeout))
