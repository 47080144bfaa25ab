"""A test kubelet for a real control plane. It registers a Node per node pool of the operator's default
configuration (the pool's labels, a taint per toleration, its GPUs as extended resource capacity), and
runs the pods the real scheduler binds to those Nodes as local processes: each container's command
from this virtual environment (its image ignored), its environment resolved as the kubelet does
(values, Secret and ConfigMap references, field references), its volumes mapped onto local folders
(a claim -> one folder per claim, a ConfigMap -> its keys as files), a loopback address of its own as
the pod IP. It writes pod status through the pods/status subresource (phase, IP, container states,
readiness from the pod's HTTP probes with their period, timeout and thresholds, termination message,
OOMKilled or evicted for node pressure on request) and stops a deleted pod's process as the kubelet
does (out of the endpoints, preStop sleep, SIGTERM, the grace period, SIGKILL, the terminal phase),
then confirms the deletion. The real Job,
Deployment, ReplicaSet, EndpointSlice and garbage-collector controllers do the rest. Never part of
the product."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from crucible.operator.config import NodePool, OperatorConfig
from tests.operator import pod_network
from tests.operator.fake_kubelet import instant_result
from tests.operator.kube_api import MERGE, STRATEGIC, KubeApi, resource_path
from tests.operator.kubelet_logs import ContainerLogServer

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4096
LOG_TAIL_LINES = 80
LOG_TAIL_BYTES = 2048
# Probes look for their first success this often, whatever their period, so tests do not wait a
# whole period for a server that is already up; failures are counted at the probe's own period.
FIRST_SUCCESS_EVERY = 0.25
RESTART_BACKOFF_CAP = 8.0
OOM_EXIT_CODE = 137
EVICTION_MESSAGE = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 64Mi."
NODE_CAPACITY = {"cpu": "64", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "500Gi"}
GPUS_PER_NODE = "8"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_name(pool: str) -> str:
    return f"test-node-{pool}"


def node_manifest(pool_name: str, pool: NodePool) -> dict:
    """A Node of `pool`: labelled with its node selector, tainted with what its pods tolerate (an
    `Exists` toleration stands for a taint of any value), with its GPUs as capacity."""
    taints = [
        {
            "key": t["key"],
            "effect": t.get("effect", "NoSchedule"),
            **({"value": t["value"]} if "value" in t else {}),
        }
        for t in pool.tolerations
    ]
    name = node_name(pool_name)
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "crucible.dev/test-pool": pool_name,
        **pool.node_selector,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints} if taints else {},
    }


def node_status(pool: NodePool, kubelet_port: int | None = None) -> dict:
    """Ready, with the pool's capacity; `kubelet_port` is where the API server reaches this node's
    kubelet for pods/log (kubelet_logs.py)."""
    capacity = dict(NODE_CAPACITY)
    if pool.gpu_resource:
        capacity[pool.gpu_resource] = GPUS_PER_NODE
    condition = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "the test kubelet runs pods as local processes",
        "lastHeartbeatTime": now(),
        "lastTransitionTime": now(),
    }
    return {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [condition],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        **({"daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}} if kubelet_port else {}),
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "kubeletVersion": "test",
            "containerRuntimeVersion": "local-process://",
            "osImage": "",
            "kernelVersion": "",
            "kubeProxyVersion": "",
            "bootID": "",
            "machineID": "",
            "systemUUID": "",
        },
    }


async def register_nodes(
    api: KubeApi, pools: dict[str, NodePool] | None = None, kubelet_port: int | None = None
) -> list[str]:
    """A Node per pool (the operator's default `cpu` and `gpu` pools unless given), ready for pods; its
    kubelet (for container logs) on `kubelet_port` of 127.0.0.1 when given."""
    pools = pools if pools is not None else OperatorConfig().node_pools
    names = []
    for pool_name, pool in pools.items():
        manifest = node_manifest(pool_name, pool)
        status, answer = await api.request("POST", resource_path("v1/nodes"), manifest)
        if status not in (201, 409):
            raise AssertionError(f"cannot register node {manifest['metadata']['name']}: {answer}")
        path = resource_path("v1/nodes", name=manifest["metadata"]["name"]) + "/status"
        await api.call("PATCH", path, {"status": node_status(pool, kubelet_port)}, STRATEGIC)
        # The API server taints a new Node not-ready; the node lifecycle controller, which lifts it once
        # the Node reports Ready, does not run here (no heartbeats): lift it as it would.
        node_path = resource_path("v1/nodes", name=manifest["metadata"]["name"])
        await api.call("PATCH", node_path, {"spec": {"taints": manifest["spec"].get("taints")}}, MERGE)
        names.append(manifest["metadata"]["name"])
    return names


def _bindable(ip: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((ip, port))
        except OSError:
            return False
    return True


def _in_mount(value: str, mounts: dict[str, Path]) -> str:
    """A path inside the container -> the same path under the folder standing for its mount."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            return str(mounts[mount_path]) + value[len(mount_path) :]
    return value


def _paths_in_json(text: str, mounts: dict[str, Path]) -> str:
    """JSON text with every string that is a path inside a mount mapped as `_in_mount` maps one."""
    return re.sub(r'"(/[^"]*)"', lambda match: json.dumps(_in_mount(match.group(1), mounts)), text)


def _field(pod: dict, path: str) -> str:
    """A fieldRef's value: metadata.name, metadata.labels['key'], status.podIP, spec.nodeName..."""
    if path.startswith(("metadata.labels[", "metadata.annotations[")):
        which, _, key = path.removeprefix("metadata.").partition("[")
        return (pod["metadata"].get(which) or {}).get(key.strip("]'\""), "")
    value: object = pod
    for step in path.split("."):
        value = value.get(step, "") if isinstance(value, dict) else ""
    return str(value)


@dataclass
class PodRun:
    """One pod on this node, and its container's process."""

    body: dict
    ip: str  # where its process listens: a loopback address of its own
    ready: bool = False
    started: bool = False
    terminating: bool = False
    restarts: int = 0
    exits: list[int] = field(default_factory=list)
    oom_requested: bool = False
    eviction_requested: bool = False
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task | None = None
    last_state: dict = field(default_factory=dict)
    started_at: str = field(default_factory=now)

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def pod_ip(self) -> str:
        """The address its status reports (routed to `ip` by the test pod network)."""
        return pod_network.pod_address(self.ip)

    @property
    def namespace(self) -> str:
        return self.body["metadata"]["namespace"]

    @property
    def labels(self) -> dict[str, str]:
        return self.body["metadata"].get("labels") or {}

    @property
    def container(self) -> dict:
        return self.body["spec"]["containers"][0]

    @property
    def owner(self) -> str:
        """Name of the controller that made the pod (its Job or ReplicaSet)."""
        owners = [o for o in self.body["metadata"].get("ownerReferences") or [] if o.get("controller")]
        return owners[0]["name"] if owners else ""

    def port(self, name_or_number: int | str) -> int:
        if isinstance(name_or_number, int) or str(name_or_number).isdigit():
            return int(name_or_number)
        for port in self.container.get("ports", []):
            if port.get("name") == name_or_number:
                return int(port["containerPort"])
        raise KeyError(f"pod {self.name} has no port named {name_or_number!r}")


@dataclass
class NodeAgent:
    """Runs the pods of one namespace that the scheduler bound to the test Nodes."""

    api: KubeApi
    namespace: str
    workdir: Path
    nodes: tuple[str, ...] = tuple(node_name(pool) for pool in ("cpu", "gpu"))
    # Pods of Jobs finish at once with a successful result (or `results[job]`) instead of running.
    instant: bool = False
    # Pods of Deployments run their container as a process; else they are reported running and
    # ready at once, with no process (for tests that only need the Deployment rolled out).
    run_servers: bool = False
    timeout: float = 300
    # Instant mode: a Job's result by Job name, in place of the default one (metrics that differ).
    results: dict[str, dict] = field(default_factory=dict)
    # Where the API server's pods/log reaches the test Nodes' kubelet; this agent answers for its pods.
    logs: ContainerLogServer | None = None
    # Instant mode: an artifact directory a Job "writes" (copied to its --artifact-uri), by Job name.
    artifacts: dict[str, Path] = field(default_factory=dict)
    pods: dict[str, PodRun] = field(default_factory=dict)  # by pod uid
    pods_run: list[str] = field(default_factory=list)  # names of the Job pods run, in order
    _tasks: set[asyncio.Task] = field(default_factory=set)
    _addresses: itertools.count = field(default_factory=lambda: itertools.count(2))
    _network: int = field(default_factory=lambda: random.randint(1, 254))
    _watch: asyncio.Task | None = None

    async def start(self) -> None:
        synced = asyncio.Event()
        self._watch = asyncio.create_task(self._follow(synced))
        await asyncio.wait_for(synced.wait(), 30)
        if self.logs is not None:
            self.logs.serve(self.namespace, self.container_log)

    async def _follow(self, synced: asyncio.Event) -> None:
        async for event in self.api.watch(resource_path("v1/pods", self.namespace)):
            if event["type"] == "SYNCED":
                synced.set()
            else:
                self._on_pod(event["type"], event["object"])

    def volume(self, claim: str) -> Path:
        """The folder standing for the persistent volume `claim` of this namespace."""
        return self.workdir / "volumes" / claim

    # -- what the tests look at

    def running(self, owner_prefix: str = "") -> list[PodRun]:
        """Pods not stopping whose controller's name starts with `owner_prefix` (a Deployment's pods
        belong to its ReplicaSets, named after it)."""
        return [p for p in self.pods.values() if not p.terminating and p.owner.startswith(owner_prefix)]

    def pods_of(self, deployment: str) -> list[PodRun]:
        """The live pods of a Deployment (those of its ReplicaSets, `<deployment>-<hash>`)."""
        return [p for p in self.running(deployment + "-") if p.owner.rpartition("-")[0] == deployment]

    def oom_kill(self, pod_name: str) -> None:
        """Kill the pod's container as the kernel's OOM killer would; its status says OOMKilled."""
        (pod,) = [p for p in self.pods.values() if p.name == pod_name]
        pod.oom_requested = True
        if pod.process is not None and pod.process.returncode is None:
            pod.process.kill()

    def evict(self, pod_name: str) -> None:
        """Evict the pod as the kubelet does when its node runs low on memory (a hard threshold): the
        container is killed at once (SIGKILL, exit 137) and the pod ends Failed, reason Evicted, with a
        DisruptionTarget condition (TerminationByKubelet); it is not restarted in place."""
        (pod,) = [p for p in self.pods.values() if p.name == pod_name and not p.terminating]
        pod.eviction_requested = True
        if pod.process is not None and pod.process.returncode is None:
            pod.process.kill()

    def log(self, pod_name: str) -> str:
        """What the pod's container wrote to stdout and stderr so far (all its runs), as `kubectl logs`."""
        path = self.workdir / "pods" / pod_name / "log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def container_log(self, pod_name: str, container: str) -> str | None:
        """The log of a container of a pod this agent runs, None when it runs no such container (called
        from the log server's thread: it only reads)."""
        known = [p for p in list(self.pods.values()) if p.name == pod_name]
        if not known or known[0].container["name"] != container:
            return None
        return self.log(pod_name)

    # -- reacting to pods

    def _on_pod(self, kind: str, body: dict) -> None:
        if body["spec"].get("nodeName") not in self.nodes:
            return  # not scheduled yet, or on a node of someone else
        uid = body["metadata"]["uid"]
        pod = self.pods.get(uid)
        if kind == "DELETED":
            if pod is not None and not pod.terminating:
                self._keep(asyncio.create_task(self._stop(pod, confirm=False)))
            return
        deleting = body["metadata"].get("deletionTimestamp")
        if pod is None:
            if deleting or (body.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                if deleting:  # a pod this agent no longer runs (it finished): confirm at once
                    self._keep(asyncio.create_task(self._confirm_deletion(body)))
                return
            pod = PodRun(body, self._free_address(body))
            pod_network.route(pod.pod_ip, pod.ip)
            self.pods[uid] = pod
            pod.task = asyncio.create_task(self._run(pod))
            self._keep(pod.task)
            return
        pod.body = body
        if deleting and not pod.terminating:
            pod.terminating = True
            self._keep(asyncio.create_task(self._stop(pod, confirm=True)))

    def _free_address(self, body: dict) -> str:
        """The next loopback address whose container ports nothing listens on (another test run on
        this machine may use the same range)."""
        ports = [
            port["containerPort"]
            for container in body["spec"]["containers"]
            for port in container.get("ports", [])
        ]
        while True:
            serial = next(self._addresses)
            ip = f"127.{self._network}.{serial // 250}.{serial % 250 + 2}"
            if all(_bindable(ip, port) for port in ports):
                return ip

    def _keep(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, pod: PodRun) -> None:
        if len(pod.body["spec"]["containers"]) != 1:
            raise AssertionError(f"pod {pod.name}: the test kubelet runs pods of one container")
        policy = pod.body["spec"].get("restartPolicy", "Always")
        job = pod.labels.get("batch.kubernetes.io/job-name")
        if job is not None:
            self.pods_run.append(pod.name)
        await self._write_status(pod, running=True)
        if job is not None and self.instant:
            await self._finish_instantly(pod, job)
            return
        if job is None and not self.run_servers:
            pod.started = True
            await self._set_ready(pod, True)
            return
        pod_dir = self.workdir / "pods" / pod.name
        pod_dir.mkdir(parents=True)
        while not pod.terminating:
            terminated = await self._execute(pod, pod_dir)
            if pod.terminating:
                return
            pod.exits.append(terminated["exitCode"])
            if pod.eviction_requested:
                await self._write_status(pod, terminated=terminated, phase="Failed", evicted=True)
                return
            if policy == "Never" or (policy == "OnFailure" and terminated["exitCode"] == 0):
                phase = "Succeeded" if terminated["exitCode"] == 0 else "Failed"
                await self._write_status(pod, terminated=terminated, phase=phase)
                return
            pod.restarts += 1
            pod.last_state = {"terminated": terminated}
            pod.ready = pod.started = False
            await self._write_status(pod, waiting="CrashLoopBackOff")
            await asyncio.sleep(min(RESTART_BACKOFF_CAP, 0.5 * 2**pod.restarts))

    async def _finish_instantly(self, pod: PodRun, job: str) -> None:
        command = [*pod.container.get("command", []), *pod.container.get("args", [])]
        result = dict(self.results.get(job) or {})
        if job in self.artifacts:
            result.setdefault("artifact", self._place_artifact(command, self.artifacts[job]))
        terminated = {
            "exitCode": 0,
            "reason": "Completed",
            "message": instant_result(command, result),
            "startedAt": pod.started_at,
            "finishedAt": now(),
        }
        await self._write_status(pod, terminated=terminated, phase="Succeeded")

    def _place_artifact(self, command: list[str], source: Path) -> dict:
        """Copy `source` where the Job's --artifact-uri (pvc://claim/path) lands on this node; the
        result's artifact entry, with the sha256 its model card holds."""
        uri = command[command.index("--artifact-uri") + 1]
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        shutil.copytree(source, self.volume(claim) / path, dirs_exist_ok=True)
        card = json.loads((source / "model.json").read_text())
        return {"uri": uri, "sha256": (card.get("weights") or {}).get("sha256") or card["sha256"]}

    async def _execute(self, pod: PodRun, pod_dir: Path) -> dict:
        """Run the container once; its `terminated` state."""
        container = pod.container
        mounts = await self._mounts(pod, pod_dir)
        termination = pod_dir / "termination-log"
        termination.write_text("")
        mounts[container.get("terminationMessagePath", DEFAULT_TERMINATION_LOG)] = termination
        command = [*container.get("command", []), *container.get("args", [])]
        program = shutil.which(command[0], path=str(Path(sys.executable).parent)) or command[0]
        env = {**os.environ, **await self._environment(pod, mounts)}
        # The container listens on every interface of its pod: here, the pod's own loopback address.
        arguments = [pod.ip if value == "0.0.0.0" else _in_mount(value, mounts) for value in command[1:]]
        log = pod_dir / "log"
        started = now()
        with log.open("ab") as output:
            pod.process = await asyncio.create_subprocess_exec(
                program, *arguments, stdout=output, stderr=asyncio.subprocess.STDOUT, env=env, cwd=pod_dir
            )
        pod.started_at = started
        await self._write_status(pod, running=True)
        probes = asyncio.create_task(self._probe(pod))
        try:
            exit_code = await asyncio.wait_for(pod.process.wait(), self.timeout)
        except TimeoutError:
            pod.process.kill()
            exit_code = await pod.process.wait()
        finally:
            probes.cancel()
        message = termination.read_text(errors="replace")[:TERMINATION_MESSAGE_LIMIT]
        if not message and exit_code and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            message = "\n".join(tail)[-LOG_TAIL_BYTES:]
        if exit_code < 0:  # killed by a signal: the runtime reports 128 + its number
            exit_code = 128 - exit_code
        if pod.oom_requested:
            reason, exit_code = "OOMKilled", OOM_EXIT_CODE
            pod.oom_requested = False
        else:
            reason = "Completed" if exit_code == 0 else "Error"
        terminated = {"exitCode": exit_code, "reason": reason, "startedAt": started, "finishedAt": now()}
        return {**terminated, "message": message} if message else terminated

    async def _environment(self, pod: PodRun, mounts: dict[str, Path]) -> dict[str, str]:
        """The container's variables as the kubelet sets them when it starts: envFrom first, then env
        (values, fieldRef, secretKeyRef, configMapKeyRef); paths under mounts mapped here."""
        env: dict[str, str] = {}
        for source in pod.container.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                data = await self._data("secrets", source["secretRef"]["name"], pod)
            else:
                data = await self._data("configmaps", source["configMapRef"]["name"], pod)
            env |= {prefix + key: value for key, value in data.items()}
        for item in pod.container.get("env", []):
            reference = item.get("valueFrom")
            if reference is None:
                env[item["name"]] = _in_mount(item.get("value", ""), mounts)
            elif "fieldRef" in reference:
                env[item["name"]] = (
                    pod.ip
                    if reference["fieldRef"]["fieldPath"]
                    in (
                        "status.podIP",
                        "status.podIPs",
                    )
                    else _field(pod.body, reference["fieldRef"]["fieldPath"])
                )
            elif "secretKeyRef" in reference or "configMapKeyRef" in reference:
                kind = "secrets" if "secretKeyRef" in reference else "configmaps"
                key = reference.get("secretKeyRef") or reference["configMapKeyRef"]
                data = await self._data(kind, key["name"], pod, optional=key.get("optional", False))
                if key["key"] in data:
                    env[item["name"]] = data[key["key"]]
                elif not key.get("optional"):
                    raise AssertionError(f"pod {pod.name}: {kind} {key['name']} has no key {key['key']}")
            elif "resourceFieldRef" in reference:
                resource = reference["resourceFieldRef"]["resource"]
                kind, _, name = resource.partition(".")
                env[item["name"]] = str((pod.container.get("resources") or {}).get(kind, {}).get(name, ""))
        return env

    async def _data(self, kind: str, name: str, pod: PodRun, optional: bool = False) -> dict[str, str]:
        body = await self.api.get(resource_path(f"v1/{kind}", pod.namespace, name))
        if body is None:
            if optional:
                return {}
            raise AssertionError(f"pod {pod.name}: {kind} {name} does not exist")
        if kind == "secrets":
            return {key: base64.b64decode(value).decode() for key, value in (body.get("data") or {}).items()}
        return dict(body.get("data") or {})

    async def _mounts(self, pod: PodRun, pod_dir: Path) -> dict[str, Path]:
        """Mount path in the container -> the folder standing for it here."""
        folders: dict[str, Path] = {}
        config_files: list[tuple[Path, str]] = []
        for volume in pod.body["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                folder = self.volume(volume["persistentVolumeClaim"]["claimName"])
            else:
                folder = pod_dir / "volumes" / volume["name"]
            folder.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                data = await self._data("configmaps", volume["configMap"]["name"], pod)
                config_files += [(folder / key, text) for key, text in data.items()]
            if "secret" in volume:
                data = await self._data("secrets", volume["secret"]["secretName"], pod)
                for key, text in data.items():
                    (folder / key).write_text(text)
            folders[volume["name"]] = folder
        mounts = {}
        for mount in pod.container.get("volumeMounts", []):
            folder = folders[mount["name"]] / mount.get("subPath", "")
            folder.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"]] = folder
        # A ConfigMap may name paths inside the container (the trainer's spec names a mounted dataset
        # source): they are mapped like the command's arguments, as quoted JSON strings.
        for path, text in config_files:
            path.write_text(_paths_in_json(text, mounts))
        return mounts

    # -- probes

    async def _probe(self, pod: PodRun) -> None:
        """The startup probe until it passes (the container counts as started), then readiness and
        liveness, each at its own period, timeout and thresholds; a failed liveness or startup probe
        kills the container (the restart policy then applies)."""
        container = pod.container
        async with aiohttp.ClientSession() as session:
            startup = container.get("startupProbe")
            if startup and not await self._until_passed(session, pod, startup):
                pod.process.kill()
                return
            pod.started = True
            await self._write_status(pod, running=True)
            checks = [self._readiness(session, pod, container.get("readinessProbe"))]
            if container.get("livenessProbe"):
                checks.append(self._liveness(session, pod, container["livenessProbe"]))
            await asyncio.gather(*checks)

    async def _check(self, session: aiohttp.ClientSession, pod: PodRun, probe: dict) -> bool:
        check = probe.get("httpGet")
        if check is None:
            return True  # exec and TCP probes are not run here
        url = f"http://{pod.ip}:{pod.port(check['port'])}{check.get('path', '/')}"
        timeout = aiohttp.ClientTimeout(total=probe.get("timeoutSeconds", 1))
        try:
            async with session.get(url, timeout=timeout) as response:
                return 200 <= response.status < 400
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _until_passed(self, session: aiohttp.ClientSession, pod: PodRun, probe: dict) -> bool:
        """Probe until a success, or for periodSeconds x failureThreshold."""
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
        while loop.time() < deadline:
            if await self._check(session, pod, probe):
                return True
            await asyncio.sleep(FIRST_SUCCESS_EVERY)
        return False

    async def _readiness(self, session: aiohttp.ClientSession, pod: PodRun, probe: dict | None) -> None:
        if probe is None:
            await self._set_ready(pod, True)
            return
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        successes = failures = 0
        while not pod.terminating:
            passed = await self._check(session, pod, probe)
            successes, failures = (successes + 1, 0) if passed else (0, failures + 1)
            if not pod.ready and successes >= probe.get("successThreshold", 1):
                await self._set_ready(pod, True)
            elif pod.ready and failures >= probe.get("failureThreshold", 3):
                await self._set_ready(pod, False)
            await asyncio.sleep(probe.get("periodSeconds", 10) if pod.ready else FIRST_SUCCESS_EVERY)

    async def _liveness(self, session: aiohttp.ClientSession, pod: PodRun, probe: dict) -> None:
        await asyncio.sleep(probe.get("initialDelaySeconds", 0))
        failures = 0
        while not pod.terminating:
            failures = 0 if await self._check(session, pod, probe) else failures + 1
            if failures >= probe.get("failureThreshold", 3) and pod.process is not None:
                pod.process.kill()
                return
            await asyncio.sleep(probe.get("periodSeconds", 10))

    # -- status

    async def _set_ready(self, pod: PodRun, ready: bool) -> None:
        pod.ready = ready
        await self._write_status(pod, running=True)

    async def _write_status(
        self,
        pod: PodRun,
        running: bool = False,
        terminated: dict | None = None,
        waiting: str | None = None,
        phase: str = "Running",
        evicted: bool = False,
    ) -> None:
        container = pod.container
        ready = pod.ready and terminated is None and waiting is None
        if terminated is not None:
            state = {"terminated": terminated}
        elif waiting is not None:
            state = {"waiting": {"reason": waiting}}
        else:
            state = {"running": {"startedAt": pod.started_at}}
        flag = "True" if ready else "False"
        conditions = [
            {"type": "Initialized", "status": "True", "lastTransitionTime": now()},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": now()},
            {"type": "Ready", "status": flag, "lastTransitionTime": now()},
        ]
        if terminated is not None:
            conditions[1:] = [{**c, "reason": "PodCompleted"} for c in conditions[1:]]
        if evicted:
            # What the Job controller's podFailurePolicy matches for a disruption (onPodConditions).
            conditions.append(
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "TerminationByKubelet",
                    "message": EVICTION_MESSAGE,
                    "lastTransitionTime": now(),
                }
            )
        status = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": pod.pod_ip,
            "podIPs": [{"ip": pod.pod_ip}],
            "startTime": pod.body.get("status", {}).get("startTime") or now(),
            "conditions": conditions,
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "containerID": f"local-process://{pod.name}",
                    "ready": ready,
                    "started": pod.started and terminated is None and waiting is None,
                    "restartCount": pod.restarts,
                    "state": state,
                    **({"lastState": pod.last_state} if pod.last_state else {}),
                }
            ],
            **({"reason": "Evicted", "message": EVICTION_MESSAGE} if evicted else {}),
        }
        path = resource_path("v1/pods", pod.namespace, pod.name) + "/status"
        code, answer = await self.api.request("PATCH", path, {"status": status}, STRATEGIC)
        if code == 200:
            pod.body = answer
        elif code != 404:  # a pod already deleted has no status to write
            raise AssertionError(f"status of pod {pod.name}: {code} {answer.get('message')}")

    # -- stopping

    async def _stop(self, pod: PodRun, confirm: bool) -> None:
        """As the kubelet stops a deleted pod: out of the endpoints (not ready), the preStop sleep,
        SIGTERM, the grace period, SIGKILL; then the deletion is confirmed."""
        pod.terminating = True
        alive = pod.process is not None and pod.process.returncode is None
        if alive:
            if pod.ready and confirm:
                await self._set_ready(pod, False)
            pre_stop = ((pod.container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}
            grace = pod.body["metadata"].get(
                "deletionGracePeriodSeconds", pod.body["spec"].get("terminationGracePeriodSeconds", 30)
            )
            await asyncio.sleep(min(pre_stop.get("seconds", 0), grace))
            if pod.process.returncode is None:
                pod.process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(pod.process.wait(), max(grace - pre_stop.get("seconds", 0), 0.1))
                except TimeoutError:
                    pod.process.kill()
                    await pod.process.wait()
        if pod.task is not None:
            pod.task.cancel()
        if alive and confirm:
            # The kubelet moves a deleted pod to a terminal phase before it confirms the deletion: the
            # Job controller (with a podFailurePolicy) counts and replaces a pod only once it is Failed.
            terminated = self._killed(pod)
            phase = "Succeeded" if terminated["exitCode"] == 0 else "Failed"
            await self._write_status(pod, terminated=terminated, phase=phase)
        if confirm:
            await self._confirm_deletion(pod.body)
        self.pods.pop(pod.body["metadata"]["uid"], None)
        pod_network.unroute(pod.pod_ip)

    @staticmethod
    def _killed(pod: PodRun) -> dict:
        """The `terminated` state of a container stopped for its pod's deletion (128 + the signal)."""
        code = pod.process.returncode if pod.process is not None else 0
        code = 128 - code if code is not None and code < 0 else code or 0
        reason = "Completed" if code == 0 else "Error"
        return {"exitCode": code, "reason": reason, "startedAt": pod.started_at, "finishedAt": now()}

    async def _confirm_deletion(self, body: dict) -> None:
        """What the kubelet does once the containers stopped: delete with no grace period, for this
        very pod (not a new one of the same name)."""
        path = resource_path("v1/pods", body["metadata"]["namespace"], body["metadata"]["name"])
        options = {"gracePeriodSeconds": 0, "preconditions": {"uid": body["metadata"]["uid"]}}
        await self.api.request("DELETE", path, options)

    async def stop(self) -> None:
        """The test is over: no process outlives it (nothing is restarted once this begins)."""
        if self.logs is not None:
            self.logs.forget(self.namespace)
        if self._watch is not None:
            self._watch.cancel()
        for pod in self.pods.values():
            pod.terminating = True
        for task in list(self._tasks):
            task.cancel()
        for task in [*self._tasks, *([self._watch] if self._watch else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for pod in list(self.pods.values()):
            pod_network.unroute(pod.pod_ip)
            if pod.process is not None and pod.process.returncode is None:
                pod.process.kill()
                with contextlib.suppress(Exception):
                    await pod.process.wait()
