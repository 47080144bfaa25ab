"""A test Deployment controller and kubelet for server Deployments: each replica is a real process (the
container's `crucible serve`) listening on a loopback address of its own, 127.x.y.z, which is its pod
IP. It rolls Deployments as Kubernetes does (maxSurge and maxUnavailable, new pods ready before old
ones stop), probes readiness over HTTP, restarts crashed containers with a back-off, and stops pods
as the kubelet does: out of the endpoints first, then the preStop sleep, then SIGTERM and the grace
period. Pods and Deployment status are written back to the emulator. Never part of the product."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import math
import random
import signal
import socket
import uuid
from dataclasses import dataclass, field

import aiohttp
import kmock

from tests.operator.fake_cluster import Cluster
from tests.operator.fake_kubelet import FakeKubelet, container_command, now, pod_of

DEPLOYMENTS = "apps/v1/deployments"
RECONCILE_EVERY = 0.2
PROBE_EVERY = 0.25
RESTART_BACKOFF_CAP = 8.0


def template_hash(template: dict) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _scaled(value: int | str | None, replicas: int, round_up: bool, default: int) -> int:
    """maxSurge (rounded up) or maxUnavailable (rounded down): a number or a percentage."""
    if value is None:
        return default
    if isinstance(value, str) and value.endswith("%"):
        exact = replicas * int(value[:-1]) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def _bindable(ip: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((ip, port))
        except OSError:
            return False
    return True


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@dataclass
class ServerPod:
    name: str
    namespace: str
    owner_uid: str
    template_hash: str
    labels: dict[str, str]
    ip: str
    body: dict
    ready: bool = False
    terminating: bool = False
    restarts: int = 0
    exits: list[int] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task | None = None

    def port(self, name_or_number: int | str) -> int:
        if isinstance(name_or_number, int) or str(name_or_number).isdigit():
            return int(name_or_number)
        for port in self.body["spec"]["containers"][0].get("ports", []):
            if port.get("name") == name_or_number:
                return int(port["containerPort"])
        raise KeyError(f"pod {self.name} has no port named {name_or_number!r}")


@dataclass
class FakeDeploymentController:
    cluster: Cluster
    kubelet: FakeKubelet  # maps volumes and writes status as it does for trainer pods
    pods: dict[str, ServerPod] = field(default_factory=dict)
    _status_written: dict[str, dict] = field(default_factory=dict)
    _addresses: itertools.count = field(default_factory=lambda: itertools.count(2))
    _network: int = field(default_factory=lambda: random.randint(1, 254))

    def endpoints(self, namespace: str, selector: dict[str, str]) -> list[ServerPod]:
        """Ready pods a Service with this selector sends traffic to (terminating ones excluded)."""
        return [
            pod
            for pod in self.pods.values()
            if pod.namespace == namespace
            and pod.ready
            and not pod.terminating
            and selects(selector, pod.labels)
        ]

    def pods_of(self, deployment: str, namespace: str = "default") -> list[ServerPod]:
        owner = self.cluster.get(DEPLOYMENTS, deployment, namespace)
        uid = (owner or {}).get("metadata", {}).get("uid")
        return [pod for pod in self.pods.values() if pod.owner_uid == uid and not pod.terminating]

    async def run(self) -> None:
        wanted = kmock.resource(DEPLOYMENTS)
        async with aiohttp.ClientSession(self.kubelet.base_url) as session:
            while True:
                deployments = {}
                for (resource, _, _), obj in list(self.cluster.objects.items()):
                    if resource == wanted and not obj.deleted:
                        deployments[obj.raw["metadata"]["uid"]] = obj.raw
                for deployment in deployments.values():
                    await self._reconcile(session, deployment)
                for pod in list(self.pods.values()):
                    if pod.owner_uid not in deployments and not pod.terminating:
                        self._terminate(session, pod)  # the Deployment was deleted: garbage-collect
                await asyncio.sleep(RECONCILE_EVERY)

    async def _reconcile(self, session: aiohttp.ClientSession, deployment: dict) -> None:
        metadata, spec = deployment["metadata"], deployment["spec"]
        replicas = spec.get("replicas", 1)
        current = template_hash(spec["template"])
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        surge = _scaled(rolling.get("maxSurge"), replicas, round_up=True, default=1)
        unavailable = _scaled(rolling.get("maxUnavailable"), replicas, round_up=False, default=0)
        live = [p for p in self.pods.values() if p.owner_uid == metadata["uid"] and not p.terminating]
        new = [p for p in live if p.template_hash == current]
        old = [p for p in live if p.template_hash != current]
        for _ in range(min(replicas - len(new), replicas + surge - len(live))):
            pod = self._start(session, deployment, current)
            new.append(pod)
            live.append(pod)
        # Scale down old pods, then new ones beyond `replicas`, not-ready ones first; a ready pod only
        # while enough others stay ready (maxUnavailable).
        by_readiness = (
            sorted(old, key=lambda p: p.ready)
            + sorted(new, key=lambda p: p.ready)[: max(0, len(new) - replicas)]
        )
        for pod in by_readiness:
            if pod.ready and sum(p.ready for p in live) - 1 < replicas - unavailable:
                continue
            self._terminate(session, pod)
            live.remove(pod)
        await self._write_status(session, deployment, live, current)

    async def _write_status(
        self, session: aiohttp.ClientSession, deployment: dict, live: list[ServerPod], current: str
    ) -> None:
        ready = sum(pod.ready for pod in live)
        replicas = deployment["spec"].get("replicas", 1)
        available = ready >= replicas
        status = {
            "observedGeneration": deployment["metadata"].get("generation"),
            "replicas": len(live),
            "updatedReplicas": sum(pod.template_hash == current for pod in live),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, len(live) - ready),
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available else "False",
                    "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                }
            ],
        }
        uid = deployment["metadata"]["uid"]
        if (
            self._status_written.get(uid) != status
            or (deployment.get("status") or {}).get("observedGeneration") != status["observedGeneration"]
        ):
            self._status_written[uid] = status
            with contextlib.suppress(aiohttp.ClientResponseError):  # deleted meanwhile
                await self.kubelet.write_status(session, deployment, status)

    def _free_address(self, deployment: dict) -> str:
        """The next loopback address whose container ports nothing listens on (another test run on
        this machine may use the same range)."""
        ports = [
            port["containerPort"]
            for container in deployment["spec"]["template"]["spec"]["containers"]
            for port in container.get("ports", [])
        ]
        while True:
            serial = next(self._addresses)
            ip = f"127.{self._network}.{serial // 250}.{serial % 250 + 2}"
            if all(_bindable(ip, port) for port in ports):
                return ip

    def _start(self, session: aiohttp.ClientSession, deployment: dict, current: str) -> ServerPod:
        metadata, template = deployment["metadata"], deployment["spec"]["template"]
        ip = self._free_address(deployment)
        labels = {**template["metadata"].get("labels", {}), "pod-template-hash": current}
        name = f"{metadata['name']}-{current}-{uuid.uuid4().hex[:5]}"
        body = pod_of(deployment, name, labels)
        pod = ServerPod(name, metadata["namespace"], metadata["uid"], current, labels, ip, body)
        self.pods[name] = pod
        pod.task = asyncio.create_task(self._run_pod(session, pod))
        return pod

    async def _run_pod(self, session: aiohttp.ClientSession, pod: ServerPod) -> None:
        async with session.post(f"/api/v1/namespaces/{pod.namespace}/pods", json=pod.body) as response:
            response.raise_for_status()
            pod.body = await response.json()
        await self._pod_status(session, pod)
        container = pod.body["spec"]["containers"][0]
        pod_dir = self.kubelet.workdir / "pods" / pod.name
        pod_dir.mkdir(parents=True)
        mounts = await self.kubelet.mounts(session, pod.body, container, pod_dir)
        program, arguments, env = container_command(container, mounts)
        env.update(await self.kubelet.secret_env(session, pod.body, container))
        # The container listens on every interface of its pod: here, the pod's own loopback address.
        arguments = [pod.ip if value == "0.0.0.0" else value for value in arguments]
        while not pod.terminating:
            with (pod_dir / "log").open("ab") as log:
                pod.process = await asyncio.create_subprocess_exec(
                    program, *arguments, stdout=log, stderr=asyncio.subprocess.STDOUT, env=env
                )
            probe = asyncio.create_task(self._probe(session, pod, container))
            exit_code = await pod.process.wait()
            probe.cancel()
            if pod.terminating:
                return
            pod.exits.append(exit_code)
            pod.restarts += 1
            await self._set_ready(session, pod, False)
            await asyncio.sleep(min(RESTART_BACKOFF_CAP, 0.5 * 2**pod.restarts))  # CrashLoopBackOff

    async def _probe(self, session: aiohttp.ClientSession, pod: ServerPod, container: dict) -> None:
        """The readiness probe as the kubelet runs it: its timeout, period and failure threshold. Only
        the first success is looked for more often than the period, so tests do not wait for it."""
        probe = container["readinessProbe"]
        check = probe["httpGet"]
        url = f"http://{pod.ip}:{pod.port(check['port'])}{check['path']}"
        failures = 0
        timeout = aiohttp.ClientTimeout(total=probe.get("timeoutSeconds", 1))
        async with aiohttp.ClientSession(timeout=timeout) as probes:
            while True:
                try:
                    async with probes.get(url) as response:
                        passed = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    passed = False
                failures = 0 if passed else failures + 1
                if passed and not pod.ready:
                    await self._set_ready(session, pod, True)
                elif pod.ready and failures >= probe.get("failureThreshold", 3):
                    await self._set_ready(session, pod, False)
                await asyncio.sleep(probe.get("periodSeconds", 10) if pod.ready else PROBE_EVERY)

    async def _set_ready(self, session: aiohttp.ClientSession, pod: ServerPod, ready: bool) -> None:
        pod.ready = ready
        await self._pod_status(session, pod)

    async def _pod_status(self, session: aiohttp.ClientSession, pod: ServerPod) -> None:
        flag = "True" if pod.ready else "False"
        container = pod.body["spec"]["containers"][0]
        status = {
            "phase": "Running",
            "podIP": pod.ip,
            "podIPs": [{"ip": pod.ip}],
            "startTime": now(),
            "conditions": [
                {"type": "Ready", "status": flag, "lastTransitionTime": now()},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": now()},
            ],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": pod.ready,
                    "restartCount": pod.restarts,
                    "started": True,
                    "state": {"running": {"startedAt": now()}},
                }
            ],
        }
        with contextlib.suppress(aiohttp.ClientResponseError):  # the pod is being deleted
            await self.kubelet.write_status(session, pod.body, status)

    def _terminate(self, session: aiohttp.ClientSession, pod: ServerPod) -> None:
        pod.terminating = True  # out of every Service's endpoints from now on
        task = asyncio.create_task(self._stop(session, pod))
        self.kubelet.keep(task)

    async def _stop(self, session: aiohttp.ClientSession, pod: ServerPod) -> None:
        container = pod.body["spec"]["containers"][0]
        pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}
        await self._set_ready(session, pod, False)
        await asyncio.sleep(pre_stop.get("seconds", 0))
        grace = pod.body["spec"].get("terminationGracePeriodSeconds", 30)
        if pod.process is not None and pod.process.returncode is None:
            pod.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(pod.process.wait(), grace)
            except TimeoutError:
                pod.process.kill()
                await pod.process.wait()
        if pod.task is not None:
            pod.task.cancel()
        async with session.delete(f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}"):
            pass
        self.pods.pop(pod.name, None)

    async def stop(self) -> None:
        """The test is over: no server process outlives it."""
        for pod in list(self.pods.values()):
            if pod.task is not None:
                pod.task.cancel()
            if pod.process is not None and pod.process.returncode is None:
                pod.process.kill()
                with contextlib.suppress(Exception):
                    await pod.process.wait()
