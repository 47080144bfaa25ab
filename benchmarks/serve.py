"""Serving benchmark: our server against the model's raw batched forward pass and a naive server.

In one run, for the digits model (tiny_cnn, 16x16) and a mobilenet_v3_small at 224x224, a closed
loop of 1, 8 and 32 clients (each sends its next request when the previous answer is in) measures:

- raw:    the model's forward pass on a batch of `concurrency` images, back to back, in a process of
          its own on the server's cores: no HTTP, no decoding, the limit. Once per backend: eager
          PyTorch (`torch`) and ONNX Runtime (`onnxruntime`) on the model's verified ONNX copy.
- server: `crucible serve --backend B` (uvicorn, real HTTP on 127.0.0.1), with dynamic batching,
          for each backend.
- naive:  a FastAPI app under the same uvicorn with one endpoint that runs one eager forward pass per
          request. It decodes and encodes with the server's own codec, so the comparison is about
          batching, not JSON parsing.

- floor:   the HTTP floor: a bare ASGI app under the same uvicorn that reads the request's body and
          answers a short fixed JSON, nothing else. Its latency and CPU per request are what any
          Python server on this stack pays before it parses, decodes or runs anything.
- kserve:  with `--kserve-python PY` (a Python environment where `kserve` is installed beside this
          project's packages), KServe's `ModelServer` with a custom `kserve.Model` whose `predict`
          runs the same eager forward pass: the side-by-side the README quotes, on the same v2 JSON
          requests (KServe's defaults otherwise: its access log stays on).

Each client sends one image per request: UINT8 pixels as JSON (`data` list, what curl users send),
the same with the protocol's binary tensor extension (raw bytes, what Triton and KServe clients
send), or a photo-like JPEG file of the input's size to `/predict` (`image`; the server decodes
and resizes it).

A load generator on the same cores takes CPU from the server, so req/s alone would partly measure
the load generator. Beside req/s the table gives the server process's CPU time per image (from
/proc) and the raw forward's CPU time per image at the batch size the server formed, measured right
after each slice of load so that both see the same load from elsewhere on the machine: their
difference, "overhead", is what the server spends on HTTP, decoding, batching and encoding, measured
directly. Where the machine has two cores or more, the load generator runs on its own core(s), and
the servers and the raw forward on the others (the output says which).

The mobilenet has freshly initialised weights: its speed does not depend on what it learned.

    python benchmarks/serve.py                 # everything, about ten minutes on 2 cores
    python benchmarks/serve.py --duration 2 --models mobilenet --payloads binary --backends onnxruntime
    python benchmarks/serve.py --models mobilenet --kserve-python /tmp/kserve/bin/python

An environment for the KServe case, beside this project's own (KServe's dependencies do not touch it):

    python3 -m venv /tmp/kserve
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/kserve/lib/python3.11/site-packages/base.pth
    /tmp/kserve/bin/pip install kserve && /tmp/kserve/bin/pip install --no-deps -e .

Requests go to 127.0.0.1 only, and every loop is bounded by `--duration`.
"""

from __future__ import annotations

import os

# The same OpenMP setting for all cases (the server sets it too; child processes inherit it).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import asyncio
import contextlib
import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import torch
from fastapi import FastAPI, Request, Response

from crucible.resources import available_cpus

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
CONCURRENCY = (1, 8, 32)
BACKENDS = ("torch", "onnxruntime")
PAYLOADS = ("json", "binary", "image")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DIGITS_SPEC = {
    "seed": 7,
    "dataset": {"source": "digits", "imageSize": 16},
    "model": {"architecture": "tiny_cnn", "dropout": 0.1},
    "hyperparameters": {"epochs": 4, "batchSize": 64, "learningRate": 0.01},
    "gates": {
        "debug": {"enabled": False},
        "crossValidation": {"enabled": False},
        "overfitting": {"enabled": False},
    },
}


@dataclass
class Cell:
    model: str
    case: str  # raw | server | naive | floor | kserve
    backend: str  # torch | onnxruntime
    payload: str  # tensor | json | binary | image
    concurrency: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    mean_batch: float | None = None  # images per forward pass in the server
    cpu_ms_per_image: float | None = None  # CPU time of the measured process per image
    raw_cpu_ms_per_image: float | None = None  # the raw forward's, at the server's mean batch size

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def overhead_ms(self) -> float | None:
        if self.cpu_ms_per_image is None or self.raw_cpu_ms_per_image is None:
            return None
        return self.cpu_ms_per_image - self.raw_cpu_ms_per_image

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


# Cores


@dataclass(frozen=True)
class Placement:
    """Which cores the load generator uses, and which the servers and the raw forward use."""

    load: tuple[int, ...]
    server: tuple[int, ...]

    @property
    def pinned(self) -> bool:
        return self.load != self.server

    def describe(self) -> str:
        if not self.pinned:
            return f"load generator, servers and raw forward share CPU(s) {list(self.server)} (not pinned)"
        return (
            f"load generator pinned to CPU(s) {list(self.load)}; servers and raw forward to CPU(s) "
            f"{list(self.server)} ({len(self.server)} thread(s) for the forward pass)"
        )


def placement(pin: bool) -> Placement:
    cores = tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else ()
    if not pin or len(cores) < 2:
        return Placement(cores, cores)
    # One core in four (at least one) for the load generator: it does far less work per request.
    split = max(1, len(cores) // 4)
    return Placement(cores[-split:], cores[:-split])


def _pinned_to(cores: tuple[int, ...]):
    def pin() -> None:
        if cores and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cores)

    return pin


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# Artifacts


def _has_onnx_record(directory: Path) -> bool:
    card = directory / "model.json"
    return card.is_file() and "onnx" in json.loads(card.read_text())


def digits_artifact(directory: Path) -> Path:
    from crucible.api.trainingrun import TrainingRunSpec
    from crucible.trainer.run import RunContext, train

    if not _has_onnx_record(directory):
        print(f"training the digits model into {directory} ...", flush=True)
        result = train(
            TrainingRunSpec.model_validate(DIGITS_SPEC), RunContext("digits", directory, device="cpu")
        )
        if result.phase != "Succeeded":
            raise SystemExit(f"training failed: {result.reason}")
    return directory


def mobilenet_artifact(directory: Path) -> Path:
    from crucible.trainer import export, onnx_export
    from crucible.trainer.models import build_model

    if not _has_onnx_record(directory):
        torch.manual_seed(0)
        model = build_model("mobilenet_v3_small", 10, 0.2).eval()
        sha256 = export.save_weights(model, directory)
        # Random "held-out" images: the check compares ONNX Runtime with PyTorch, which needs no labels.
        check_images, labels = torch.randn(16, 3, 224, 224), torch.zeros(16, dtype=torch.long)
        card = {
            "name": "mobilenet",
            "architecture": "mobilenet_v3_small",
            "classes": [f"class{i}" for i in range(10)],
            "numClasses": 10,
            "dropout": 0.2,
            "input": {"shape": [3, 224, 224], "scale": "pixels / 255", "layout": "NCHW", "colorMode": "RGB"},
            "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "weights": {"file": export.WEIGHTS_FILE, "sha256": sha256},
            "sha256": sha256,
            "note": "freshly initialised weights, for speed measurements only",
        }
        card |= onnx_export.export_checked(
            model, directory, onnx_export.batches_of(check_images, labels), max_accuracy_drop=1.0
        )
        export.write_model_card(directory, card)
    return directory


# Requests


def _jpeg(pixels: np.ndarray) -> bytes:
    """A photo-like JPEG of the input's size, quality 90 (`data_scale.picture`: a graded sky, noise
    and an object). Random pixels, the tensor payloads' content, would make a JPEG three times the
    bytes of a photo's and the slowest case there is for a decoder: not what users upload."""
    from data_scale import picture

    height, width = pixels.shape[2:]
    buffer = io.BytesIO()
    picture(3, 7).resize((width, height)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def infer_request(name: str, pixels: np.ndarray, payload: str) -> bytes:
    """A complete HTTP request for one image, encoded once and sent many times."""
    tensor = {"name": "input", "datatype": "UINT8", "shape": list(pixels.shape)}
    extra, path, content_type = "", f"/v2/models/{name}/infer", "application/json"
    if payload == "binary":
        header = orjson.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": pixels.nbytes}}]})
        body = header + pixels.tobytes()
        extra = f"Inference-Header-Content-Length: {len(header)}\r\n"
    elif payload == "image":
        boundary = "crucible-benchmark-boundary"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="image.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n".encode()
            + _jpeg(pixels)
            + f"\r\n--{boundary}--\r\n".encode()
        )
        path, content_type = f"/predict?model={name}&top_k=1", f"multipart/form-data; boundary={boundary}"
    else:
        body = orjson.dumps({"inputs": [{**tensor, "data": pixels.ravel().tolist()}]})
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bytes:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected response: {head[:200]!r}")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    return await reader.readexactly(length)


async def _closed_loop(port: int, request: bytes, concurrency: int, warmup: float, duration: float) -> tuple:
    connections = [await asyncio.open_connection(HOST, port) for _ in range(concurrency)]
    latencies: list[float] = []
    clock = time.perf_counter  # uvloop's loop.time() ticks in whole milliseconds
    start = clock()
    measure_from, stop_at = start + warmup, start + warmup + duration

    async def client(reader, writer) -> None:
        while (now := clock()) < stop_at:
            await _exchange(reader, writer, request)
            if now >= measure_from:
                latencies.append((clock() - now) * 1000)

    await asyncio.gather(*(client(r, w) for r, w in connections))
    elapsed = clock() - measure_from
    for _, writer in connections:
        writer.close()
    return latencies, elapsed


def run_load(port: int, request: bytes, concurrency: int, warmup: float, duration: float) -> tuple:
    try:
        import uvloop

        return uvloop.run(_closed_loop(port, request, concurrency, warmup, duration))
    except ImportError:
        return asyncio.run(_closed_loop(port, request, concurrency, warmup, duration))


def first_answer(port: int, request: bytes) -> dict:
    async def once() -> bytes:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            return await _exchange(reader, writer, request)
        finally:
            writer.close()

    return orjson.loads(asyncio.run(once()))


# Processes


class Server:
    """A uvicorn process listening on a free port of 127.0.0.1, on the given cores."""

    def __init__(self, command: list[str], cores: tuple[int, ...]) -> None:
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_pinned_to(cores)
        )
        self.log: list[str] = []
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line)
            match = re.search(r"Uvicorn running on http://[\d.]+:(\d+)", line)
            if match:
                # Keep reading its output, or a burst of log lines would fill the pipe and stall it.
                threading.Thread(target=self.log.extend, args=(self.process.stdout,), daemon=True).start()
                return int(match.group(1))
        raise SystemExit("server did not start:\n" + "".join(self.log))

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        return code


class RawForward:
    """The raw forward pass in a process of its own, on the servers' cores, one request at a time
    over a pipe: so it gets the same CPUs, threads and settings as a server's inference worker."""

    def __init__(self, artifact: Path, cores: tuple[int, ...]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--raw-worker", str(artifact)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_pinned_to(cores),
        )

    def measure(self, backend: str, batch: int, warmup: float, seconds: float) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps([backend, batch, warmup, seconds]) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the raw forward process ended")
        return json.loads(line)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


def raw_worker(artifact: Path) -> None:
    """Answer `[backend, batch, warmup, seconds]` lines with the latencies of back-to-back forward
    passes on one batch, and the process's CPU time while they ran."""
    from crucible.server.repository import configure_threads, load_artifact

    threads = available_cpus()
    # As `crucible serve` sets them up: see `configure_threads`.
    configure_threads(threads, torch.device("cpu"))
    backends = {
        backend: load_artifact(artifact, torch.device("cpu"), backend=backend, threads=threads).backend
        for backend in BACKENDS
    }
    image_shape = load_artifact(artifact, torch.device("cpu"), backend="torch").image_shape
    for line in sys.stdin:
        backend, size, warmup, seconds = json.loads(line)
        forward = backends[backend].logits
        batch = torch.randn(size, *image_shape)
        latencies, passes = [], 0
        start = time.perf_counter()
        measure_from, stop_at = start + warmup, start + warmup + seconds
        while (now := time.perf_counter()) < measure_from:
            forward(batch)
        cpu_before = time.process_time()
        while (now := time.perf_counter()) < stop_at:
            forward(batch)
            latencies.append((time.perf_counter() - now) * 1000)
            passes += 1
        answer = {
            "latencies": latencies,
            "seconds": time.perf_counter() - measure_from,
            "cpu_per_image": (time.process_time() - cpu_before) / max(1, passes * size),
            "threads": threads,
        }
        print(json.dumps(answer), flush=True)


def metric_sum(port: int, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def batching_of(port: int, name: str) -> dict:
    """What a server reports under `parameters.batching` of `GET /v2/models/<name>`."""
    import urllib.request

    with urllib.request.urlopen(f"http://{HOST}:{port}/v2/models/{name}", timeout=10) as response:
        return orjson.loads(response.read())["parameters"]["batching"]


def describe_batching(batching: dict) -> str:
    """One line on the batch size a server forms, and the start-up figures it chose it from."""
    limit = f"forms batches of up to {batching['max_batch_size']}"
    if not batching["calibrated"]:
        return limit + " (not calibrated)"
    figures = ", ".join(f"{size}: {ms:.2f}" for size, ms in batching["ms_per_image"].items())
    return f"{limit} (start-up calibration, ms per image by batch size {{{figures}}})"


# The naive baseline


def naive_app(artifact: Path):
    """One forward pass per request, in the event loop: what a first FastAPI endpoint looks like."""
    from crucible.server import codec
    from crucible.server.repository import load_artifact

    model = load_artifact(artifact, torch.device("cpu"), backend="torch")
    model.warm_up()
    app = FastAPI()

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        decoded = codec.decode_infer_request(
            await request.body(), model.image_shape, 64, request.headers.get(codec.BINARY_HEADER)
        )
        probabilities = model.predict([decoded.images])
        body, _ = codec.encode_infer_response(
            model.name, model.version, decoded, probabilities, model.classes
        )
        return Response(body, media_type="application/json")

    return app


def serve_naive(artifact: Path) -> None:
    import uvicorn

    torch.set_num_threads(available_cpus())
    uvicorn.run(naive_app(artifact), host=HOST, port=0, access_log=False)


FLOOR_ANSWER = b'{"model_name":"floor","outputs":[]}'


async def floor_app(scope: dict, receive, send) -> None:
    """Read the whole body, answer FLOOR_ANSWER: the HTTP part of a request and nothing else."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(FLOOR_ANSWER))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": FLOOR_ANSWER})


def serve_floor() -> None:
    import uvicorn

    uvicorn.run(floor_app, host=HOST, port=0, access_log=False, lifespan="off")


def serve_kserve(artifact: Path) -> None:
    """KServe's ModelServer on a free port, serving the artifact's eager forward pass as a custom
    model would: the v2 request's input as numpy, one forward pass per request, probabilities out."""
    import kserve

    from crucible.server.repository import load_artifact

    torch.set_num_threads(available_cpus())
    model = load_artifact(artifact, torch.device("cpu"), backend="torch")
    model.warm_up()

    class CrucibleModel(kserve.Model):
        def __init__(self) -> None:
            super().__init__(model.name)
            self.ready = True

        def predict(self, payload, headers=None, response_headers=None):
            probabilities = model.predict([payload.inputs[0].as_numpy()])
            output = kserve.InferOutput("probabilities", list(probabilities.shape), "FP32", probabilities)
            return kserve.InferResponse(payload.id or uuid.uuid4().hex, model.name, [output])

    server = kserve.ModelServer(http_port=0, enable_grpc=False, workers=1, enable_latency_logging=False)
    server.start([CrucibleModel()])


# The measurements


class Tally:
    """Latencies, requests, seconds and CPU time of one case, added up over the rounds."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.requests = 0
        self.seconds = 0.0
        self.images = 0.0  # server only: images and forward passes, from its metrics
        self.passes = 0.0
        self.cpu_seconds = 0.0  # of the measured process, over `cpu_images` images
        self.cpu_images = 0.0
        # Server only: the raw forward's CPU seconds for the same images, at the batch size the server
        # formed in each slice, measured right after it (so both see the same load from elsewhere).
        self.raw_cpu_seconds = 0.0

    def add(self, latencies: list[float], seconds: float, requests: int | None = None) -> None:
        self.latencies += latencies
        self.requests += len(latencies) if requests is None else requests
        self.seconds += seconds

    @property
    def cpu_ms_per_image(self) -> float | None:
        return 1000 * self.cpu_seconds / self.cpu_images if self.cpu_images else None

    @property
    def raw_cpu_ms_per_image(self) -> float | None:
        return 1000 * self.raw_cpu_seconds / self.cpu_images if self.raw_cpu_seconds else None


def batches_so_far(port: int) -> tuple[float, float]:
    return metric_sum(port, "crucible_server_batch_size_sum"), metric_sum(
        port, "crucible_server_batch_size_count"
    )


@dataclass
class Servers:
    processes: dict[tuple[str, str], Server] = field(default_factory=dict)  # (case, backend) -> server

    def stop(self) -> None:
        for (case, backend), server in self.processes.items():
            code = server.stop()
            if case == "server" and code != 0:
                print(f"  warning: the {backend} server exited {code} after SIGTERM", flush=True)


def _serves(case: str, payload: str) -> bool:
    """The naive baseline takes tensors only; KServe is compared on the v2 JSON request (its binary
    extension path answered our requests with 400 "There was an error parsing the body")."""
    if case == "naive":
        return payload != "image"
    if case == "kserve":
        return payload == "json"
    return True


def _check_answers(servers: Servers, requests: dict[str, bytes], reference: np.ndarray) -> None:
    """Every server answers as the model does, before anything is timed."""
    for (case, backend), server in servers.processes.items():
        for payload, request in requests.items():
            if not _serves(case, payload):
                continue
            answer = first_answer(server.port, request)
            if case == "floor":
                if answer != orjson.loads(FLOOR_ANSWER):
                    raise SystemExit(f"the HTTP floor ({payload}) answers {answer}")
                continue
            if payload == "image":  # decoded from a lossy JPEG: only the shape of the answer is checked
                if len(answer["predictions"]) != 1:
                    raise SystemExit(f"{case} {backend} ({payload}) answers {answer}")
                continue
            probabilities = np.array(answer["outputs"][0]["data"], dtype=np.float32)
            if not np.allclose(probabilities, reference.ravel(), atol=1e-4):
                raise SystemExit(f"{case} {backend} ({payload}) answers differently from the model")


def benchmark_model(
    model_name: str, artifact: Path, pixels: np.ndarray, args: argparse.Namespace, cores: Placement
) -> list[Cell]:
    """Every case at every concurrency, in interleaved rounds: a burst of load from elsewhere on the
    machine then slows all cases alike instead of whichever one ran at that moment."""
    from crucible.server.repository import load_artifact

    model = load_artifact(artifact, torch.device("cpu"), backend="torch")
    reference = model.predict([pixels])
    requests = {payload: infer_request(model.name, pixels, payload) for payload in args.payloads}
    print(f"\n{model_name}: starting the servers, the naive baseline and the raw forward", flush=True)
    serve = [sys.executable, "-m", "crucible", "serve", "--model", str(artifact), "--port", "0"]
    servers = Servers()
    for backend in args.backends:
        servers.processes[("server", backend)] = Server([*serve, "--backend", backend], cores.server)
    servers.processes[("naive", "torch")] = Server(
        [sys.executable, __file__, "--naive-server", str(artifact)], cores.server
    )
    servers.processes[("floor", "none")] = Server([sys.executable, __file__, "--floor-server"], cores.server)
    if args.kserve_python:
        servers.processes[("kserve", "torch")] = Server(
            [args.kserve_python, __file__, "--kserve-server", str(artifact)], cores.server
        )
    raw = RawForward(artifact, cores.server)
    cells = []
    try:
        _check_answers(servers, requests, reference)
        for backend in args.backends:
            batching = batching_of(servers.processes[("server", backend)].port, model.name)
            print(f"  server {backend:11} {describe_batching(batching)}", flush=True)
        slice_seconds = args.duration / args.rounds
        for concurrency in args.concurrency:
            tallies: dict[tuple[str, str, str], Tally] = {}
            for _ in range(args.rounds):
                for backend in args.backends:
                    measured = raw.measure(backend, concurrency, args.warmup, slice_seconds)
                    tally = tallies.setdefault(("raw", backend, "tensor"), Tally())
                    tally.add(
                        measured["latencies"], measured["seconds"], len(measured["latencies"]) * concurrency
                    )
                    tally.cpu_seconds += measured["cpu_per_image"] * len(measured["latencies"]) * concurrency
                    tally.cpu_images += len(measured["latencies"]) * concurrency
                for (case, backend), server in servers.processes.items():
                    for payload, request in requests.items():
                        if not _serves(case, payload):
                            continue
                        before = batches_so_far(server.port) if case == "server" else (0.0, 0.0)
                        cpu_before = server.cpu_seconds()
                        latencies, seconds = run_load(
                            server.port, request, concurrency, args.warmup, slice_seconds
                        )
                        cpu = server.cpu_seconds() - cpu_before
                        tally = tallies.setdefault((case, backend, payload), Tally())
                        tally.add(latencies, seconds)
                        if case == "floor":  # one image per request
                            tally.cpu_seconds += cpu
                            tally.cpu_images += len(latencies)
                        if case == "server":
                            after = batches_so_far(server.port)
                            images, passes = after[0] - before[0], after[1] - before[1]
                            tally.images += images
                            tally.passes += passes
                            tally.cpu_seconds += cpu
                            tally.cpu_images += images
                            if passes:
                                batch = max(1, round(images / passes))
                                raw_seconds = args.cpu_seconds / args.rounds
                                measured = raw.measure(backend, batch, args.warmup / 2, raw_seconds)
                                tally.raw_cpu_seconds += measured["cpu_per_image"] * images
            for (case, backend, payload), tally in tallies.items():
                mean_batch = tally.images / tally.passes if tally.passes else None
                cell = Cell(
                    model_name,
                    case,
                    backend,
                    payload,
                    concurrency,
                    tally.requests,
                    tally.seconds,
                    tally.latencies,
                    mean_batch,
                    tally.cpu_ms_per_image,
                )
                cell.raw_cpu_ms_per_image = (
                    tally.cpu_ms_per_image if case == "raw" else tally.raw_cpu_ms_per_image
                )
                cells.append(cell)
                overhead = cell.overhead_ms if case == "server" else None
                print(
                    f"  c={concurrency:<3} {case:6} {backend:11} {payload:6} {cell.throughput:8.1f} /s"
                    + (f"  overhead {overhead:6.2f} CPU ms/image" if overhead is not None else ""),
                    flush=True,
                )
    finally:
        servers.stop()
        raw.stop()
    return cells


# The report


def _optional(value: float | None, width: int, digits: int) -> str:
    return f"{value:>{width}.{digits}f}" if value is not None else " " * width


def report(cells: list[Cell], cores: Placement) -> None:
    print("\n" + "=" * 110)
    columns = ("model", "case", "backend", "payload", "conc", "req/s", "p50 ms", "p95 ms", "p99 ms", "batch")
    print(
        "{:10} {:7} {:11} {:7} {:>4} {:>9} {:>8} {:>8} {:>8} {:>6}".format(*columns)
        + "  cpu ms/img  raw cpu ms/img  overhead ms/img"
    )
    for cell in cells:
        print(
            f"{cell.model:10} {cell.case:7} {cell.backend:11} {cell.payload:7} {cell.concurrency:>4} "
            f"{cell.throughput:>9.1f} {cell.percentile(50):>8.2f} {cell.percentile(95):>8.2f} "
            f"{cell.percentile(99):>8.2f} {_optional(cell.mean_batch, 6, 1)}  "
            f"{_optional(cell.cpu_ms_per_image, 10, 2)}  {_optional(cell.raw_cpu_ms_per_image, 14, 2)}  "
            f"{_optional(cell.overhead_ms if cell.case == 'server' else None, 15, 2)}"
        )
    print("\nratios (throughput, one run) and targets")
    for model in dict.fromkeys(cell.model for cell in cells):
        _model_ratios(model, [c for c in cells if c.model == model])
    print(
        f"\n{cores.describe()}. CPU time per image: the server process's (from /proc) over the images it "
        "answered; raw: the forward pass alone at the batch size the server formed; overhead: the "
        "difference. floor: a bare ASGI app under the same uvicorn that only reads the body (its CPU "
        "per request is the HTTP floor of the overhead). "
        "The mobilenet has freshly initialised weights (speed only)."
    )


def _model_ratios(model: str, cells: list[Cell]) -> None:
    def find(case: str, backend: str, payload: str, concurrency: int) -> Cell | None:
        return next(
            (
                c
                for c in cells
                if (c.case, c.backend, c.payload, c.concurrency) == (case, backend, payload, concurrency)
            ),
            None,
        )

    concurrencies = sorted({c.concurrency for c in cells})
    for concurrency in concurrencies:
        eager, onnx = (
            find("raw", "torch", "tensor", concurrency),
            find("raw", "onnxruntime", "tensor", concurrency),
        )
        if eager and onnx:
            print(
                f"  {model:10} raw onnxruntime/eager c={concurrency:<3} "
                f"{onnx.throughput / eager.throughput:5.2f}x"
            )
    servers = dict.fromkeys((c.backend, c.payload) for c in cells if c.case == "server")
    for backend, payload in servers:
        for concurrency in concurrencies:
            server = find("server", backend, payload, concurrency)
            eager = find("raw", "torch", "tensor", concurrency)
            same = find("raw", backend, "tensor", concurrency)
            naive = find("naive", "torch", payload, concurrency)
            kserve = find("kserve", "torch", payload, concurrency)
            floor = find("floor", "none", payload, concurrency)
            if not (server and eager and same):
                continue
            to_eager, to_same = server.throughput / eager.throughput, server.throughput / same.throughput
            line = (
                f"  {model:10} {backend:11} {payload:6} c={concurrency:<3} server/eager raw {to_eager:5.2f}x"
            )
            if backend != "torch":
                line += f"  server/{backend} raw {to_same:5.2f}x"
            if naive:
                line += f"  server/naive {server.throughput / naive.throughput:5.2f}x"
            if kserve:
                line += f"  server/kserve {server.throughput / kserve.throughput:5.2f}x"
            targets = []
            if model != "mobilenet":  # the targets are set for mobilenet_v3_small at 224
                print(line)
                continue
            if concurrency == 32 and backend == "onnxruntime" and payload in ("binary", "image"):
                targets += [
                    f">=1.0x eager raw {_mark(to_eager >= 1.0)}",
                    f">=0.8x onnx raw {_mark(to_same >= 0.8)}",
                ]
            if concurrency == 32 and payload == "json":
                targets.append(f">=0.6x eager raw {_mark(to_eager >= 0.6)}")
            if concurrency == 1:
                gap = server.percentile(50) - same.percentile(50)
                targets.append(
                    f"p50 - raw p50 {gap:+.2f} ms (<=3 ms {_mark(gap <= 3)}"
                    + (f"; HTTP floor p50 {floor.percentile(50):.2f} ms)" if floor else ")")
                )
            if payload == "binary" and server.overhead_ms is not None:
                floor_cpu = floor.cpu_ms_per_image if floor else None
                targets.append(
                    f"overhead {server.overhead_ms:.2f} CPU ms/img (<=1 ms {_mark(server.overhead_ms <= 1)}"
                    + (f"; HTTP floor {floor_cpu:.2f})" if floor_cpu is not None else ")")
                )
            print(line + ("   targets: " + ", ".join(targets) if targets else ""))


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _choices(text: str, allowed: tuple[str, ...], flag: str, parser: argparse.ArgumentParser) -> list[str]:
    values = text.split(",")
    for value in values:
        if value not in allowed:
            parser.error(f"{flag}: unknown value {value!r}; allowed: " + ", ".join(allowed))
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="Seconds measured per cell, in all.")
    parser.add_argument(
        "--rounds", type=int, default=4, help="Interleaved rounds the duration is split into."
    )
    parser.add_argument("--warmup", type=float, default=0.3, help="Seconds run before measuring each slice.")
    parser.add_argument(
        "--cpu-seconds",
        type=float,
        default=1.0,
        help="Seconds of raw forward passes, over the rounds, for the CPU time per image at the batch "
        "size a server formed (measured right after each of its slices).",
    )
    parser.add_argument("--models", default="digits,mobilenet", help="Comma-separated: digits, mobilenet.")
    parser.add_argument(
        "--payloads", default=",".join(PAYLOADS), help="Comma-separated: json, binary, image."
    )
    parser.add_argument("--backends", default=",".join(BACKENDS), help="Comma-separated: torch, onnxruntime.")
    parser.add_argument(
        "--concurrency", default=",".join(map(str, CONCURRENCY)), help="Comma-separated client counts."
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="Let the load generator share the servers' cores (by default it gets cores of its own).",
    )
    parser.add_argument(
        "--artifacts", default=str(ROOT / "runs" / "benchmark"), help="Where artifacts are kept."
    )
    parser.add_argument(
        "--kserve-python",
        metavar="PY",
        help="A Python where kserve is installed beside this project: adds KServe's ModelServer.",
    )
    parser.add_argument("--naive-server", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--kserve-server", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--floor-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw-worker", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive_server:
        serve_naive(Path(args.naive_server))
        return 0
    if args.kserve_server:
        serve_kserve(Path(args.kserve_server))
        return 0
    if args.floor_server:
        serve_floor()
        return 0
    if args.raw_worker:
        raw_worker(Path(args.raw_worker))
        return 0
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.payloads = _choices(args.payloads, PAYLOADS, "--payloads", parser)
    args.backends = _choices(args.backends, BACKENDS, "--backends", parser)
    if "torch" not in args.backends:
        args.backends.insert(0, "torch")  # the eager raw forward is every ratio's baseline
    cores = placement(args.pin)
    print(cores.describe(), flush=True)
    artifacts = Path(args.artifacts)
    cells: list[Cell] = []
    started = time.perf_counter()
    for model in args.models.split(","):
        if model not in ("digits", "mobilenet"):
            parser.error(f"--models: unknown model {model!r}; allowed: digits, mobilenet")
    # The load generator (this process) keeps to its own cores from here on.
    _pinned_to(cores.load)()
    for model in args.models.split(","):
        if model == "digits":
            from sklearn.datasets import load_digits

            seven = (load_digits().images[7] * (255 / 16)).astype(np.uint8)
            pixels = np.repeat(np.kron(seven, np.ones((2, 2), np.uint8))[None, None], 3, axis=1)
            cells += benchmark_model("digits", digits_artifact(artifacts / "digits"), pixels, args, cores)
        else:
            pixels = np.random.default_rng(0).integers(0, 256, (1, 3, 224, 224), dtype=np.uint8)
            artifact = mobilenet_artifact(artifacts / "mobilenet")
            cells += benchmark_model("mobilenet", artifact, pixels, args, cores)
    report(cells, cores)
    print(f"benchmark took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
