"""The kubelet's container-log endpoint for the test kubelet (node_agent.py), so `kubectl logs` and the
API server's pods/log work on the real control plane. Never part of the product.

The API server answers pods/log by connecting to the kubelet of the pod's Node: HTTPS, at the Node's
address (InternalIP here) and `status.daemonEndpoints.kubeletEndpoint.Port`, path
`/containerLogs/{namespace}/{pod}/{container}` with the request's options as query parameters
(`tailLines`, `limitBytes`, `follow`, `previous`, `timestamps`, `sinceSeconds`). Without
`--kubelet-certificate-authority` it does not verify the kubelet's certificate, so a self-signed one
serves. One server per test session stands for the kubelet of every test Node; each test's kubelet
registers the pods of its namespace with it.
"""

from __future__ import annotations

import contextlib
import re
import ssl
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

# (pod, container) -> everything the container wrote so far, or None when this node has no such one.
LogReader = Callable[[str, str], "str | None"]
_PATH = re.compile(r"^/containerLogs/(?P<namespace>[^/]+)/(?P<pod>[^/]+)/(?P<container>[^/]+)$")


def select(text: str, tail_lines: int | None, limit_bytes: int | None) -> bytes:
    """What the kubelet sends for these options: the last `tail_lines` lines, then at most
    `limit_bytes` bytes of them from the start."""
    if tail_lines is not None:
        lines = text.splitlines(keepends=True)
        text = "".join(lines[-tail_lines:]) if tail_lines > 0 else ""
    data = text.encode()
    return data[:limit_bytes] if limit_bytes is not None else data


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (EC: made in milliseconds), as a kubelet's own."""
    directory.mkdir(parents=True, exist_ok=True)
    certificate, key = directory / "kubelet.crt", directory / "kubelet.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(certificate), "-days", "2",
         "-subj", "/CN=test-kubelet", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return certificate, key


class ContainerLogServer:
    """`/containerLogs/...` over HTTPS on a free loopback port, in a thread of its own (the tests' event
    loops come and go with each test; the Nodes, and so this port, last the session)."""

    def __init__(self, directory: Path) -> None:
        self._readers: dict[str, LogReader] = {}
        certificate, key = self_signed_certificate(directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="kubelet-logs", daemon=True)
        self.requests: list[str] = []  # the paths and queries asked for, to show what the API server sent

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> ContainerLogServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve(self, namespace: str, reader: LogReader) -> None:
        """Answer for the pods of `namespace` from `reader` (the test kubelet running them)."""
        self._readers[namespace] = reader

    def forget(self, namespace: str) -> None:
        self._readers.pop(namespace, None)

    def answer(self, path_and_query: str) -> tuple[int, bytes]:
        """(HTTP status, body) for a request, as the kubelet answers it."""
        self.requests.append(path_and_query)
        url = urlsplit(path_and_query)
        matched = _PATH.match(url.path)
        if matched is None:
            return 404, b"404 page not found\n"
        reader = self._readers.get(matched["namespace"])
        text = reader(matched["pod"], matched["container"]) if reader is not None else None
        if text is None:
            return (
                404,
                f'container "{matched["container"]}" in pod "{matched["pod"]}" is not available'.encode(),
            )
        query = parse_qs(url.query)
        try:
            tail_lines = int(query["tailLines"][0]) if "tailLines" in query else None
            limit_bytes = int(query["limitBytes"][0]) if "limitBytes" in query else None
        except ValueError as error:
            return 400, str(error).encode()
        return 200, select(text, tail_lines, limit_bytes)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = server.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass  # the tests' output is no place for an access log

        return Handler
