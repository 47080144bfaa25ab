"""A real Kubernetes control plane for tests: etcd and kube-apiserver (and, on request, the controller
manager and the scheduler) from the envtest binaries in `$KUBEBUILDER_ASSETS`, on free loopback ports.

The API server runs as hardened clusters run it: RBAC authorization and the
`OwnerReferencesPermissionEnforcement` admission plugin on top of the default plugins (PodSecurity
among them). Certificates come from `openssl`: a CA, the API server's serving certificate (so clients
verify TLS), an admin client certificate in `system:masters`, and a service-account signing key.
There is no kubelet: pods are scheduled onto Node objects and nothing runs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
HOW_TO_GET = (
    "no Kubernetes control-plane binaries: set KUBEBUILDER_ASSETS=$(../shared/envtest/unpack.sh) "
    "(or `setup-envtest use 1.34 -p path`)"
)
# The default admission plugins stay on; this one is what OpenShift and hardened clusters add, and it is
# what makes `blockOwnerDeletion: true` on a child need `update` on the owner's finalizers.
ADMISSION_PLUGINS = "OwnerReferencesPermissionEnforcement"


class ControlPlaneError(RuntimeError):
    """A control-plane process did not start or did not become ready."""


def assets_directory() -> Path | None:
    """Where the binaries are: `$KUBEBUILDER_ASSETS`, else `.envtest/bin` (where unpack.sh puts them)."""
    candidates = [os.environ.get("KUBEBUILDER_ASSETS"), str(ROOT / ".envtest" / "bin")]
    for candidate in filter(None, candidates):
        path = Path(candidate)
        if all((path / name).is_file() and os.access(path / name, os.X_OK) for name in BINARIES[:2]):
            return path
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def make_pki(directory: Path) -> None:
    """CA, serving certificate for 127.0.0.1, admin client certificate and service-account keys.

    EC keys: generating them takes milliseconds where RSA takes a noticeable part of the start-up."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=crucible-test-ca", cwd=directory)  # fmt: skip
    (directory / "serving.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject, extensions in (
        ("serving", "/CN=kube-apiserver", "serving.ext"),
        ("admin", "/O=system:masters/CN=admin", "client.ext"),
    ):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", extensions,
                 cwd=directory)  # fmt: skip
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=directory)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)


def kubeconfig_document(server: str, ca_file: Path, user: dict, name: str = "envtest") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 10) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout)


@dataclass
class ControlPlane:
    """One control plane under `directory`; `start()` brings up etcd and the API server."""

    assets: Path
    directory: Path
    processes: dict[str, Process] = field(default_factory=dict)
    port: int = 0

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        """An admin kubeconfig (group system:masters: RBAC does not apply to it)."""
        return self.directory / "kubeconfig"

    def _spawn(self, name: str, *args: str) -> Process:
        log = self.directory / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [str(self.assets / name), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.directory,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, which stops these
            )
        process = Process(name, popen, log)
        self.processes[name] = process
        return process

    def start(self, timeout: float = 60) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        make_pki(self.pki)
        etcd_client, etcd_peer, self.port = free_port(), free_port(), free_port()
        self._spawn(
            "etcd",
            f"--data-dir={self.directory / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",
        )
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--tls-cert-file={pki / 'serving.crt'}",
            f"--tls-private-key-file={pki / 'serving.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            f"--enable-admission-plugins={ADMISSION_PLUGINS}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
        )
        admin = {
            "client-certificate": str(pki / "admin.crt"),
            "client-key": str(pki / "admin.key"),
        }
        self.kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(self.server, pki / "ca.crt", admin)))
        self._wait_ready(timeout)

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def get(self, path: str) -> tuple[int, str]:
        """GET a path of the API server as admin: (status, body)."""
        request = urllib.request.Request(self.server + path)
        try:
            with urllib.request.urlopen(request, context=self._ssl_context(), timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for process in self.processes.values():
                if process.popen.poll() is not None:
                    raise ControlPlaneError(
                        f"{process.name} exited with {process.popen.returncode}; last lines of "
                        f"{process.log}:\n{process.tail()}"
                    )
            try:
                status, body = self.get("/readyz")
                if status == 200:
                    return
                last = body
            except (OSError, ssl.SSLError) as error:
                last = str(error)
            time.sleep(0.1)
        raise ControlPlaneError(
            f"kube-apiserver not ready after {timeout:.0f}s ({last.strip()[-500:]}); last lines of its log:\n"
            f"{self.processes['kube-apiserver'].tail()}"
        )

    def version(self) -> dict:
        """The API server's /version (gitVersion, major, minor, ...)."""
        status, body = self.get("/version")
        if status != 200:
            raise ControlPlaneError(f"/version answered {status}: {body}")
        return json.loads(body)

    def start_controllers(self, timeout: float = 60) -> None:
        """The controller manager (Job, Deployment, ReplicaSet, EndpointSlice, garbage collector, ...)
        and the scheduler; once. Waits until the controllers act (the `default` ServiceAccount appears)."""
        if "kube-controller-manager" in self.processes:
            return
        for name in ("kube-controller-manager", "kube-scheduler"):
            if not (self.assets / name).is_file():
                raise ControlPlaneError(f"{self.assets / name} is missing ({HOW_TO_GET})")
        pki = self.pki
        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            # No kubelet sends heartbeats: the node lifecycle controller would taint every Node.
            "--controllers=*,-nodelifecycle",
            "--use-service-account-credentials=true",
        )
        self._spawn(
            "kube-scheduler",
            f"--kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in ("kube-controller-manager", "kube-scheduler"):
                process = self.processes[name]
                if process.popen.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with {process.popen.returncode}; last lines of {process.log}:\n"
                        f"{process.tail()}"
                    )
            if self.get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200:
                return
            time.sleep(0.2)
        raise ControlPlaneError(
            "kube-controller-manager made no default ServiceAccount in time; last lines of its log:\n"
            + self.processes["kube-controller-manager"].tail()
        )

    def stop(self) -> None:
        """Stop every process by its PID, controllers first and etcd last."""
        for name in reversed(list(self.processes)):
            with contextlib.suppress(OSError):
                self.processes[name].stop()
        self.processes.clear()

    def api_client(self, kubeconfig: Path | None = None):  # -> kubernetes.client.ApiClient
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def service_account_kubeconfig(
        self,
        namespace: str,
        name: str,
        cluster_role: str,
        path: Path,
        *,
        expiration_seconds: int = 3600,
    ) -> Path:
        """A ServiceAccount `namespace/name` bound to `cluster_role` (ClusterRoleBinding), and a
        kubeconfig at `path` with a token for it from the TokenRequest API (as `kubectl create token`)."""
        from kubernetes import client

        api = self.api_client()
        with api:
            core = client.CoreV1Api(api)
            with contextlib.suppress(client.ApiException):  # it may exist already
                core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
            binding = {
                "metadata": {"name": f"{namespace}-{name}-{cluster_role}"[:253]},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": cluster_role,
                },
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            }
            try:
                client.RbacAuthorizationV1Api(api).create_cluster_role_binding(binding)
            except client.ApiException as error:
                if error.status != 409:
                    raise
            token = core.create_namespaced_service_account_token(
                name, namespace, {"spec": {"expirationSeconds": expiration_seconds}}
            ).status.token
        path.write_text(
            yaml.safe_dump(kubeconfig_document(self.server, self.pki / "ca.crt", {"token": token}, name))
        )
        return path


def start_control_plane(directory: Path) -> ControlPlane:
    """A started control plane; raises ControlPlaneError (with the log tail) when it does not start."""
    assets = assets_directory()
    if assets is None:
        raise FileNotFoundError(HOW_TO_GET)
    if not shutil.which("openssl"):
        raise FileNotFoundError("openssl is needed to make the control plane's certificates")
    plane = ControlPlane(assets=assets, directory=directory)
    try:
        plane.start()
    except BaseException:
        plane.stop()
        raise
    return plane
