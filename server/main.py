"""The server process: load and verify the artifact, warm up, then serve with uvicorn until told to
stop. SIGTERM (or Ctrl+C) stops taking connections, lets the requests in flight finish, drains the
batch queue, and exits 0."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import signal
import sys

import uvicorn
from fastapi import FastAPI

from crucible.resources import available_cpus
from crucible.server.app import create_app
from crucible.server.artifact import ArtifactError, VerifiedArtifact
from crucible.server.calibration import describe
from crucible.server.capture_store import CaptureStoreError
from crucible.server.repository import ModelRepository, configure_threads, load_verified
from crucible.server.settings import ServerSettings
from crucible.trainer.engine import pick_device

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
# How long requests in flight may take to finish after SIGTERM; Kubernetes' default grace is 30 s.
GRACEFUL_SHUTDOWN_SECONDS = 25
# Idle connections stay open longer than a load balancer's usual idle timeout (60 s): a client's next
# request then never pays for a new connection, nor races the server closing the old one.
KEEP_ALIVE_SECONDS = 75
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

log = logging.getLogger("crucible.server")


def run_server(app: FastAPI, host: str, port: int) -> int:
    """Serve `app` until SIGTERM or SIGINT, then shut down gracefully; the exit code."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # uvloop's event loop and the httptools HTTP parser where installed (the serve extra has both).
        loop="auto",
        http="auto",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        lifespan="on",
        # The metrics count every request; a log line per request would cost more than a small model.
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = uvicorn.Server(config)
    log.info("HTTP: %s event loop, %s parser", *_http_stack())
    # uvicorn re-raises the stop signal once its graceful shutdown is done, so that the process
    # ends the way the signal's previous handler says. With Python's defaults that is "killed by
    # SIGTERM" (or KeyboardInterrupt); this handler takes the signal instead, and a clean stop exits 0.
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, _: received.append(number)) for sig in _STOP_SIGNALS}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        log.info("stopped by %s after finishing the requests in flight", signal.Signals(received[0]).name)
    return EXIT_OK if server.started else EXIT_FAILED


def _http_stack() -> tuple[str, str]:
    """The event loop and HTTP parser uvicorn's "auto" picks here."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, parser


def serve(
    artifact: VerifiedArtifact,
    name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    device: str = "auto",
    settings: ServerSettings | None = None,
    threads: int | None = None,
    backend: str = "auto",
    quantize: str | None = None,
) -> int:
    """Load the verified artifact, warm up, serve: the exit code (2, with one line saying why, when the
    weights do not load)."""
    threads = threads or available_cpus()
    settings = dataclasses.replace(settings or ServerSettings(), cpus=threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    try:
        torch_device = pick_device(device)
        configure_threads(threads, torch_device)
        model = load_verified(artifact, torch_device, name, backend, quantize, threads)
    except (ArtifactError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    if settings.calibrate_batch_size:
        log.info("model %s: %s", model.name, describe(model.calibrate_batch_size(settings.max_batch_size)))
    else:
        model.warm_up(tuple(sorted({1, settings.max_batch_size})))
    log.info(
        "model %s ready: %s, %d classes, input %s, sha256 %s, on %s with %s",
        model.name,
        model.card.architecture,
        len(model.classes),
        "x".join(str(d) for d in model.image_shape),
        model.card.sha256,
        torch_device,
        model.backend.name + (f" {model.quantization}" if model.quantization else ""),
    )
    try:
        app = create_app(ModelRepository([model]), settings)
    except CaptureStoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    if settings.capture.enabled:
        log.info(
            "capture on: %g of requests stored to %s (max %s bytes per UTC day)",
            settings.capture.sample_rate,
            settings.capture.destination,
            settings.capture.max_bytes_per_day or "unlimited",
        )
    return run_server(app, host, port)
