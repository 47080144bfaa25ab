"""Serving benchmark: our server against the model's raw batched forward pass and a naive server.

In one run, for the digits model (tiny_cnn, 16x16) and a mobilenet_v3_small at 224x224, a closed
loop of 1, 8 and 32 clients (each sends its next request when the previous answer is in) measures:

- raw:    the same model's forward pass in this process on a batch of `concurrency` images, back
          to back: no HTTP, no decoding, the limit.
- server: `crucible serve` (uvicorn, real HTTP on 127.0.0.1), with dynamic batching.
- naive:  a FastAPI app under the same uvicorn with one endpoint that runs one forward pass per
          request. It decodes and encodes with the server's own codec, so the comparison is about
          batching, not JSON parsing.

Each client sends one image per request, as UINT8 pixels: JSON (`data` list, what curl users send)
and, with the protocol's binary tensor extension, raw bytes (what Triton and KServe clients send).
The mobilenet has freshly initialised weights: its speed does not depend on what it learned.

    python benchmarks/serve.py                 # everything, about four minutes on 2 cores
    python benchmarks/serve.py --duration 2 --models digits --payloads json

Requests go to 127.0.0.1 only, and every loop is bounded by `--duration`.
"""

from __future__ import annotations

import os

# The same OpenMP setting for all three cases (the server sets it too; child processes inherit it).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import torch
from fastapi import FastAPI, Request, Response

from crucible.resources import available_cpus

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
CONCURRENCY = (1, 8, 32)
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
    case: str  # raw | server | naive
    payload: str  # tensor | json | binary
    concurrency: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    mean_batch: float | None = None  # images per forward pass in the server

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


# Artifacts


def digits_artifact(directory: Path) -> Path:
    from crucible.api.trainingrun import TrainingRunSpec
    from crucible.trainer.run import RunContext, train

    if not (directory / "model.json").is_file():
        print(f"training the digits model into {directory} ...", flush=True)
        result = train(
            TrainingRunSpec.model_validate(DIGITS_SPEC), RunContext("digits", directory, device="cpu")
        )
        if result.phase != "Succeeded":
            raise SystemExit(f"training failed: {result.reason}")
    return directory


def mobilenet_artifact(directory: Path) -> Path:
    from crucible.trainer import export
    from crucible.trainer.models import build_model

    if not (directory / "model.json").is_file():
        torch.manual_seed(0)
        sha256 = export.save_weights(build_model("mobilenet_v3_small", 10, 0.2), directory)
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
        export.write_model_card(directory, card)
    return directory


# Requests


def infer_request(name: str, pixels: np.ndarray, payload: str) -> bytes:
    """A complete HTTP request for one image, encoded once and sent many times."""
    tensor = {"name": "input", "datatype": "UINT8", "shape": list(pixels.shape)}
    extra = ""
    if payload == "binary":
        header = orjson.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": pixels.nbytes}}]})
        body = header + pixels.tobytes()
        extra = f"Inference-Header-Content-Length: {len(header)}\r\n"
    else:
        body = orjson.dumps({"inputs": [{**tensor, "data": pixels.ravel().tolist()}]})
    head = (
        f"POST /v2/models/{name}/infer HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
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
    """A uvicorn process listening on a free port of 127.0.0.1."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.log: list[str] = []
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line)
            match = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            if match:
                # Keep reading its output, or a burst of log lines would fill the pipe and stall it.
                threading.Thread(target=self.log.extend, args=(self.process.stdout,), daemon=True).start()
                return int(match.group(1))
        raise SystemExit("server did not start:\n" + "".join(self.log))

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        return code


def metric_sum(port: int, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


# The naive baseline


def naive_app(artifact: Path):
    """One forward pass per request, in the event loop: what a first FastAPI endpoint looks like."""
    from crucible.server import codec
    from crucible.server.repository import load_artifact

    model = load_artifact(artifact, torch.device("cpu"))
    model.warm_up()
    app = FastAPI()

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        decoded = codec.decode_infer_request(
            await request.body(), model.image_shape, 64, request.headers.get(codec.BINARY_HEADER)
        )
        probabilities = model.predict([decoded.images])
        return Response(
            codec.encode_infer_response(model.name, model.version, decoded, probabilities, model.classes),
            media_type="application/json",
        )

    return app


def serve_naive(artifact: Path) -> None:
    import uvicorn

    torch.set_num_threads(available_cpus())
    uvicorn.run(naive_app(artifact), host=HOST, port=0, access_log=False)


# The measurements


def raw_forward(module: torch.nn.Module, batch: torch.Tensor, warmup: float, duration: float) -> tuple:
    """Back-to-back forward passes on one batch: the latency of each, and the seconds measured."""
    latencies = []
    with torch.inference_mode():
        start = time.perf_counter()
        measure_from, stop_at = start + warmup, start + warmup + duration
        while (now := time.perf_counter()) < stop_at:
            module(batch)
            if now >= measure_from:
                latencies.append((time.perf_counter() - now) * 1000)
    return latencies, time.perf_counter() - measure_from


class Tally:
    """Latencies, requests and seconds of one case, added up over the rounds."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.requests = 0
        self.seconds = 0.0
        self.images = 0.0  # server only: images and forward passes, from its metrics
        self.passes = 0.0

    def add(self, latencies: list[float], seconds: float, requests: int | None = None) -> None:
        self.latencies += latencies
        self.requests += len(latencies) if requests is None else requests
        self.seconds += seconds


def batches_so_far(port: int) -> tuple[float, float]:
    return metric_sum(port, "crucible_server_batch_size_sum"), metric_sum(
        port, "crucible_server_batch_size_count"
    )


def benchmark_model(
    model_name: str, artifact: Path, pixels: np.ndarray, args: argparse.Namespace
) -> list[Cell]:
    """Every case at every concurrency, in interleaved rounds: a burst of load from elsewhere on the
    machine then slows all cases alike instead of whichever one ran at that moment."""
    from crucible.server.repository import load_artifact

    torch.set_num_threads(available_cpus())
    model = load_artifact(artifact, torch.device("cpu"))
    reference = model.predict([pixels])
    requests = {payload: infer_request(model.name, pixels, payload) for payload in args.payloads}
    print(f"\n{model_name}: starting the server and the naive baseline", flush=True)
    servers = {
        "server": Server(
            [sys.executable, "-m", "crucible", "serve", "--model", str(artifact), "--port", "0"]
        ),
        "naive": Server([sys.executable, __file__, "--naive-server", str(artifact)]),
    }
    cells = []
    try:
        for case, server in servers.items():  # both answer as the model does, before anything is timed
            for payload, request in requests.items():
                answer = first_answer(server.port, request)
                probabilities = np.array(answer["outputs"][0]["data"], dtype=np.float32)
                if not np.allclose(probabilities, reference.ravel(), atol=1e-4):
                    raise SystemExit(f"{case} ({payload}) answers differently from the model")
        slice_seconds = args.duration / args.rounds
        for concurrency in args.concurrency:
            tallies: dict[tuple[str, str], Tally] = {}
            batch = torch.randn(concurrency, *model.image_shape)
            for _ in range(args.rounds):
                latencies, seconds = raw_forward(model.module, batch, args.warmup, slice_seconds)
                tallies.setdefault(("raw", "tensor"), Tally()).add(
                    latencies, seconds, len(latencies) * concurrency
                )
                for case, server in servers.items():
                    for payload, request in requests.items():
                        before = batches_so_far(server.port) if case == "server" else (0.0, 0.0)
                        latencies, seconds = run_load(
                            server.port, request, concurrency, args.warmup, slice_seconds
                        )
                        tally = tallies.setdefault((case, payload), Tally())
                        tally.add(latencies, seconds)
                        if case == "server":
                            after = batches_so_far(server.port)
                            tally.images += after[0] - before[0]
                            tally.passes += after[1] - before[1]
            for (case, payload), tally in tallies.items():
                mean_batch = tally.images / tally.passes if tally.passes else None
                cell = Cell(
                    model_name,
                    case,
                    payload,
                    concurrency,
                    tally.requests,
                    tally.seconds,
                    tally.latencies,
                    mean_batch,
                )
                cells.append(cell)
                print(f"  c={concurrency:<3} {case:6} {payload:6} {cell.throughput:8.1f} /s", flush=True)
    finally:
        for case, server in servers.items():
            code = server.stop()
            if case == "server" and code != 0:
                print(f"  warning: the server exited {code} after SIGTERM", flush=True)
    return cells


# The report


def report(cells: list[Cell]) -> None:
    print("\n" + "=" * 78)
    columns = ("model", "case", "payload", "conc", "req/s", "p50 ms", "p95 ms", "p99 ms", "batch")
    print("{:10} {:7} {:7} {:>4} {:>9} {:>8} {:>8} {:>8} {:>6}".format(*columns))
    for cell in cells:
        print(
            f"{cell.model:10} {cell.case:7} {cell.payload:7} {cell.concurrency:>4} {cell.throughput:>9.1f} "
            f"{cell.percentile(50):>8.2f} {cell.percentile(95):>8.2f} {cell.percentile(99):>8.2f} "
            + (f"{cell.mean_batch:>6.1f}" if cell.mean_batch else f"{'':>6}")
        )
    print("\nratios (throughput) and targets")
    for model in dict.fromkeys(cell.model for cell in cells):

        def find(case: str, payload: str, concurrency: int, model: str = model) -> Cell | None:
            return next(
                (
                    c
                    for c in cells
                    if (c.model, c.case, c.concurrency) == (model, case, concurrency)
                    and (case == "raw" or c.payload == payload)
                ),
                None,
            )

        payloads = dict.fromkeys(c.payload for c in cells if c.model == model and c.case == "server")
        for payload in payloads:
            for concurrency in sorted({c.concurrency for c in cells if c.model == model}):
                server, raw, naive = (find(case, payload, concurrency) for case in ("server", "raw", "naive"))
                if not (server and raw and naive):
                    continue
                to_raw = server.throughput / raw.throughput
                to_naive = server.throughput / naive.throughput
                line = f"  {model:10} {payload:6} c={concurrency:<3} "
                line += f"server/raw {to_raw:5.2f}x  server/naive {to_naive:5.2f}x"
                if concurrency == 32:
                    line += (
                        f"   targets: >=0.8x raw {_mark(to_raw >= 0.8)}, >=2x naive {_mark(to_naive >= 2)}"
                    )
                if concurrency == 1:
                    gap = server.percentile(50) - raw.percentile(50)
                    line += f"   p50 - raw forward = {gap:+.2f} ms (target <= 3 ms: {_mark(gap <= 3)})"
                print(line)
    print(
        f"\n{available_cpus()} CPU(s) for torch threads; load generator, servers and raw limit share them. "
        "The mobilenet has freshly initialised weights (speed only)."
    )


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="Seconds measured per cell, in all.")
    parser.add_argument(
        "--rounds", type=int, default=4, help="Interleaved rounds the duration is split into."
    )
    parser.add_argument("--warmup", type=float, default=0.3, help="Seconds run before measuring each slice.")
    parser.add_argument("--models", default="digits,mobilenet", help="Comma-separated: digits, mobilenet.")
    parser.add_argument("--payloads", default="json,binary", help="Comma-separated: json, binary.")
    parser.add_argument(
        "--concurrency", default=",".join(map(str, CONCURRENCY)), help="Comma-separated client counts."
    )
    parser.add_argument(
        "--artifacts", default=str(ROOT / "runs" / "benchmark"), help="Where artifacts are kept."
    )
    parser.add_argument("--naive-server", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.naive_server:
        serve_naive(Path(args.naive_server))
        return 0
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.payloads = args.payloads.split(",")
    artifacts = Path(args.artifacts)
    cells: list[Cell] = []
    started = time.perf_counter()
    for model in args.models.split(","):
        if model == "digits":
            from sklearn.datasets import load_digits

            seven = (load_digits().images[7] * (255 / 16)).astype(np.uint8)
            pixels = np.repeat(np.kron(seven, np.ones((2, 2), np.uint8))[None, None], 3, axis=1)
            cells += benchmark_model("digits", digits_artifact(artifacts / "digits"), pixels, args)
        elif model == "mobilenet":
            pixels = np.random.default_rng(0).integers(0, 256, (1, 3, 224, 224), dtype=np.uint8)
            cells += benchmark_model("mobilenet", mobilenet_artifact(artifacts / "mobilenet"), pixels, args)
        else:
            parser.error(f"--models: unknown model {model!r}; allowed: digits, mobilenet")
    report(cells)
    print(f"benchmark took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
