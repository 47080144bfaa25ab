"""A test kubelet for the emulator (the restart tests and benchmarks/operator_scale.py; end-to-end tests
run on the real control plane with tests/operator/node_agent.py). It plays the Job controller and the
kubelet: each trainer Job's container runs as a local process (its ConfigMap and volume mounts mapped
to folders, its image ignored), and Pod and Job status are written back as Kubernetes writes them. It
also plays the Deployment controller, reporting every Deployment rolled out. Never part of the
product."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

MERGE = {"Content-Type": "application/merge-patch+json"}
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
LOG_TAIL_LINES = 80
LOG_TAIL_BYTES = 2048
TERMINATION_MESSAGE_LIMIT = 4096


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def instant_result(command: list[str], override: dict | None = None) -> str:
    """The termination message of a trainer that passed every gate at once (for scale runs), with
    `override`'s keys (such as other metrics, or a failed gate) in its place."""
    uri = command[command.index("--artifact-uri") + 1] if "--artifact-uri" in command else "pvc://x/y"
    gate = {"passed": True, "checks": {}}
    return json.dumps(
        {
            "phase": "Succeeded",
            "gates": {"debug": gate, "crossValidation": {**gate, "mean": 0.95, "std": 0.01}},
            "metrics": {"accuracy": 0.97, "cvMean": 0.95},
            "artifact": {"uri": uri, "sha256": "0" * 64},
            **(override or {}),
        }
    )


def container_command(container: dict, mounts: dict[str, Path]) -> tuple[str, list[str], dict[str, str]]:
    """(program, arguments, environment) of a container run here: paths under its mounts mapped to
    the folders standing in for them, the program taken from this virtual environment."""

    def local(value: str) -> str:
        for mount_path in sorted(mounts, key=len, reverse=True):
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                return str(mounts[mount_path]) + value[len(mount_path) :]
        return value

    command = [*container.get("command", []), *container.get("args", [])]
    program = shutil.which(command[0], path=str(Path(sys.executable).parent)) or command[0]
    env = {
        **os.environ,
        **{item["name"]: local(item.get("value", "")) for item in container.get("env", [])},
    }
    return program, [local(value) for value in command[1:]], env


def pod_of(controller: dict, name: str, labels: dict[str, str]) -> dict:
    """A pod of `controller`'s (a Job's or a Deployment's) pod template, as its controller creates it."""
    metadata, template = controller["metadata"], controller["spec"]["template"]
    owner = {"apiVersion": controller["apiVersion"], "kind": controller["kind"]}
    owner |= {
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": metadata["namespace"],
            "labels": labels,
            "annotations": dict(template["metadata"].get("annotations") or {}),
            "ownerReferences": [owner],
        },
        "spec": template["spec"],
    }


@dataclass
class Ran:
    exit_code: int
    reason: str
    message: str
    started_at: str
    finished_at: str


@dataclass
class FakeKubelet:
    base_url: str
    workdir: Path
    instant: bool = False
    timeout: float = 300
    pods_run: list[str] = field(default_factory=list)
    # Instant mode: a Job's result by Job name, in place of the default one (metrics that differ).
    results: dict[str, dict] = field(default_factory=dict)
    # Instant mode: an artifact directory a Job "writes" (copied to its --artifact-uri), by Job name.
    artifacts: dict[str, Path] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task] = field(default_factory=set)

    async def run(self) -> None:
        async with aiohttp.ClientSession(self.base_url) as session:
            await asyncio.gather(
                self._watch(session, "/apis/batch/v1/jobs", self._on_job),
                self._watch(session, "/apis/apps/v1/deployments", self._on_deployment),
            )

    def _place_artifact(self, command: list[str], source: Path) -> dict:
        """Copy `source` where the Job's --artifact-uri (pvc://claim/path) lands on this node; the
        result's artifact entry, with the sha256 its model card holds."""
        uri = command[command.index("--artifact-uri") + 1]
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        shutil.copytree(source, self.workdir / "volumes" / claim / path, dirs_exist_ok=True)
        card = json.loads((source / "model.json").read_text())
        return {"uri": uri, "sha256": (card.get("weights") or {}).get("sha256") or card["sha256"]}

    async def _watch(
        self,
        session: aiohttp.ClientSession,
        path: str,
        react: Callable[[aiohttp.ClientSession, dict], Awaitable],
    ) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with session.get(path, params={"watch": "true"}, timeout=timeout) as response:
            async for line in response.content:
                if line.strip():
                    event = json.loads(line)
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        await react(session, event["object"])

    async def _on_job(self, session: aiohttp.ClientSession, job: dict) -> None:
        uid = job["metadata"]["uid"]
        if uid in self._seen or (job.get("status") or {}).get("conditions"):
            return
        self._seen.add(uid)
        self.keep(asyncio.create_task(self._run_job(session, job)))

    async def _on_deployment(self, session: aiohttp.ClientSession, deployment: dict) -> None:
        generation = deployment["metadata"].get("generation")
        if (deployment.get("status") or {}).get("observedGeneration") == generation:
            return
        replicas = deployment["spec"].get("replicas", 1)
        counts = {
            key: replicas for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
        }
        condition = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
        await self.write_status(
            session, deployment, {"observedGeneration": generation, **counts, "conditions": [condition]}
        )

    @staticmethod
    def _path(body: dict) -> str:
        api_version, kind = body["apiVersion"], body["kind"]
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        plural = {"Job": "jobs", "Pod": "pods", "Deployment": "deployments"}[kind]
        return f"{prefix}/namespaces/{body['metadata']['namespace']}/{plural}/{body['metadata']['name']}"

    async def write_status(self, session: aiohttp.ClientSession, body: dict, status: dict) -> None:
        async with session.patch(
            self._path(body) + "/status", data=json.dumps({"status": status}), headers=MERGE
        ) as response:
            response.raise_for_status()

    async def _run_job(self, session: aiohttp.ClientSession, job: dict) -> None:
        await self.write_status(session, job, {"startTime": now(), "active": 1})
        spec = job["spec"]
        failures = 0
        while True:
            pod = await self._create_pod(session, job)
            ran = await self._run_pod(session, pod)
            if ran.exit_code == 0:
                done = {"type": "Complete", "status": "True", "lastTransitionTime": now()}
                await self.write_status(
                    session,
                    job,
                    {"active": None, "succeeded": 1, "completionTime": now(), "conditions": [done]},
                )
                return
            failures += 1
            final = self._fails_job(spec, ran.exit_code)
            if final or failures > spec.get("backoffLimit", 6):
                reason = "PodFailurePolicy" if final else "BackoffLimitExceeded"
                failed = {"type": "Failed", "status": "True", "reason": reason, "lastTransitionTime": now()}
                await self.write_status(
                    session, job, {"active": None, "failed": failures, "conditions": [failed]}
                )
                return

    @staticmethod
    def _fails_job(spec: dict, exit_code: int) -> bool:
        for rule in (spec.get("podFailurePolicy") or {}).get("rules", []):
            codes = rule.get("onExitCodes") or {}
            if rule.get("action") == "FailJob" and exit_code in codes.get("values", []):
                return True
        return False

    async def _create_pod(self, session: aiohttp.ClientSession, job: dict) -> dict:
        metadata, template = job["metadata"], job["spec"]["template"]
        name = f"{metadata['name']}-{uuid.uuid4().hex[:5]}"
        labels = {
            **template["metadata"].get("labels", {}),
            "job-name": metadata["name"],
            "batch.kubernetes.io/job-name": metadata["name"],
            "controller-uid": metadata["uid"],
        }
        pod = pod_of(job, name, labels)
        async with session.post(f"/api/v1/namespaces/{metadata['namespace']}/pods", json=pod) as response:
            response.raise_for_status()
            created = await response.json()
        await self.write_status(session, created, {"phase": "Running", "startTime": now()})
        self.pods_run.append(name)
        return created

    async def _run_pod(self, session: aiohttp.ClientSession, pod: dict) -> Ran:
        container = pod["spec"]["containers"][0]
        command = [*container.get("command", []), *container.get("args", [])]
        started = now()
        if self.instant:
            job = pod["metadata"]["labels"].get("job-name", "")
            result = dict(self.results.get(job) or {})
            if job in self.artifacts:
                result.setdefault("artifact", self._place_artifact(command, self.artifacts[job]))
            ran = Ran(0, "Completed", instant_result(command, result), started, now())
        else:
            ran = await self._execute(session, pod, container, started)
        terminated = {
            "exitCode": ran.exit_code,
            "reason": ran.reason,
            "message": ran.message,
            "startedAt": ran.started_at,
            "finishedAt": ran.finished_at,
        }
        status = {
            "phase": "Succeeded" if ran.exit_code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ],
        }
        await self.write_status(session, pod, status)
        return ran

    async def _execute(self, session: aiohttp.ClientSession, pod: dict, container: dict, started: str) -> Ran:
        pod_dir = self.workdir / "pods" / pod["metadata"]["name"]
        pod_dir.mkdir(parents=True)
        mounts = await self.mounts(session, pod, container, pod_dir)
        termination = pod_dir / "termination-log"
        termination.touch()
        mounts[container.get("terminationMessagePath", DEFAULT_TERMINATION_LOG)] = termination

        program, arguments, env = container_command(container, mounts)
        env.update(await self.secret_env(session, pod, container))
        log = pod_dir / "log"
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                program, *arguments, stdout=output, stderr=asyncio.subprocess.STDOUT, env=env
            )
            try:
                exit_code = await asyncio.wait_for(process.wait(), self.timeout)
            except TimeoutError:
                process.kill()
                exit_code = await process.wait()
            except asyncio.CancelledError:
                process.kill()  # the test is over: leave no trainer behind
                raise
        message = termination.read_text()[:TERMINATION_MESSAGE_LIMIT]
        if not message and exit_code and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            message = "\n".join(tail)[-LOG_TAIL_BYTES:]
        return Ran(exit_code, "Completed" if exit_code == 0 else "Error", message, started, now())

    @staticmethod
    async def secret_env(session: aiohttp.ClientSession, pod: dict, container: dict) -> dict[str, str]:
        """As the kubelet does: each `valueFrom.secretKeyRef` variable, read from the Secret when the
        container starts."""
        env = {}
        for item in container.get("env", []):
            reference = (item.get("valueFrom") or {}).get("secretKeyRef")
            if reference:
                namespace, name = pod["metadata"]["namespace"], reference["name"]
                async with session.get(f"/api/v1/namespaces/{namespace}/secrets/{name}") as response:
                    response.raise_for_status()
                    secret = await response.json()
                env[item["name"]] = base64.b64decode(secret["data"][reference["key"]]).decode()
        return env

    async def mounts(
        self, session: aiohttp.ClientSession, pod: dict, container: dict, pod_dir: Path
    ) -> dict[str, Path]:
        """Mount path in the container -> folder here."""
        folders: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                folder = self.workdir / "volumes" / volume["persistentVolumeClaim"]["claimName"]
            else:
                folder = pod_dir / "volumes" / volume["name"]
            folder.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                await self._project_config_map(session, pod, volume["configMap"]["name"], folder)
            folders[volume["name"]] = folder
        mounts = {}
        for mount in container.get("volumeMounts", []):
            folder = folders[mount["name"]] / mount.get("subPath", "")
            folder.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"]] = folder
        return mounts

    async def _project_config_map(
        self, session: aiohttp.ClientSession, pod: dict, name: str, folder: Path
    ) -> None:
        namespace = pod["metadata"]["namespace"]
        async with session.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}") as response:
            response.raise_for_status()
            config_map = await response.json()
        for key, text in (config_map.get("data") or {}).items():
            (folder / key).write_text(text)

    def keep(self, task: asyncio.Task) -> None:
        """Hold a background task until it ends (or the kubelet stops)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
