"""`crucible serve`: the subcommand's flags. Nothing heavy is imported here (torch, fastapi load
when the command runs), so `crucible --help` stays fast."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from crucible.server.fetch import DEFAULT_CACHE_DIR
from crucible.server.settings import CaptureSettings, ServerSettings

DEFAULTS = ServerSettings()
EXIT_INVALID = 2


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {value}")
    return value


def _cmd_serve(args: argparse.Namespace) -> int:
    from crucible.server.artifact import ArtifactError
    from crucible.server.fetch import fetch_verified

    # Checked before torch loads, so a refusal takes a moment, not seconds.
    try:
        artifact = fetch_verified(args.model, Path(args.cache_dir), args.backend, args.quantize)
    except ArtifactError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    if args.capture and args.capture_sample_rate > 0:
        from crucible.server.capture_store import CaptureStoreError, open_store

        try:
            open_store(args.capture)
        except CaptureStoreError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_INVALID
    # Idle OpenMP workers of the forward pass would otherwise spin on the cores the event loop
    # needs to read requests; on a busy or shared CPU that spinning slows small batches many times.
    # It has to be set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from crucible.server.main import serve

    settings = ServerSettings(
        max_batch_size=args.max_batch_size,
        max_batch_delay_ms=args.max_batch_delay_ms,
        calibrate_batch_size=args.calibrate_batch_size,
        max_body_bytes=args.max_body_bytes,
        max_images=args.max_images,
        max_queue_images=args.max_queue_images,
        drift_window=args.drift_window,
        capture=CaptureSettings(
            destination=args.capture,
            sample_rate=args.capture_sample_rate,
            max_bytes_per_day=args.capture_max_bytes_per_day,
        ),
    )
    return serve(
        artifact,
        args.name,
        args.host,
        args.port,
        args.device,
        settings,
        backend=args.backend,
        quantize=args.quantize,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="Serve a trained model over HTTP (Open Inference Protocol v2, uploads, metrics).",
        description="Load an artifact written by `crucible train`, verify its sha256, warm up, and serve it. "
        "Exits 2 when the artifact cannot be served.",
    )
    serve.add_argument(
        "--model",
        required=True,
        metavar="DIR|URI",
        help="The artifact: a directory (model.json, model.pt) or s3://<bucket>/<prefix>, downloaded "
        "into --cache-dir first (credentials, endpoint and region from the AWS_* variables).",
    )
    serve.add_argument(
        "--cache-dir",
        default=str(DEFAULT_CACHE_DIR),
        help="Where an s3:// artifact is downloaded to (default: %(default)s, writable under a "
        "read-only root file system).",
    )
    serve.add_argument("--name", help="The model's name in URLs (default: the name in model.json).")
    serve.add_argument("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0 in a container).")
    serve.add_argument("--port", type=int, default=8080, help="Port to listen on; 0 picks a free one.")
    serve.add_argument(
        "--max-batch-size",
        type=_positive_int,
        default=DEFAULTS.max_batch_size,
        help="Most images per forward pass.",
    )
    serve.add_argument(
        "--max-queue-images",
        type=_positive_int,
        default=DEFAULTS.max_queue_images,
        help="Most images waiting for the model; beyond it requests get 503 with Retry-After at once.",
    )
    serve.add_argument(
        "--max-batch-delay-ms",
        type=_non_negative_float,
        default=DEFAULTS.max_batch_delay_ms,
        help="Longest a request waits for others to share its forward pass, under load.",
    )
    serve.add_argument(
        "--no-batch-size-calibration",
        dest="calibrate_batch_size",
        action="store_false",
        help="Fill batches up to --max-batch-size. By default start-up times the forward pass at "
        "batch sizes up to it and forms batches no larger than the cheapest per image.",
    )
    serve.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="Where to run the model."
    )
    serve.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnxruntime"],
        help="What runs the forward pass. auto: ONNX Runtime when the card marks the model's ONNX copy "
        "verified against PyTorch at export and onnxruntime is installed, else PyTorch (the model's "
        "metadata says which, and why).",
    )
    serve.add_argument(
        "--quantize",
        choices=["int8"],
        help="Serve the dynamically quantized int8 copy (onnxruntime), only when the card records its "
        "held-out accuracy drop within the training run's serve.maxAccuracyDrop.",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=DEFAULTS.max_body_bytes,
        help="Largest request body; larger ones get 413.",
    )
    serve.add_argument(
        "--max-images", type=_positive_int, default=DEFAULTS.max_images, help="Most images in one request."
    )
    capture = serve.add_argument_group(
        "capture", "Store a sampled share of requests (input and prediction) for labelling; off by default."
    )
    capture.add_argument(
        "--capture",
        metavar="DIR|URI",
        help="Where to store them: a directory, or s3://<bucket>/<prefix> (credentials as for --model).",
    )
    capture.add_argument(
        "--capture-sample-rate",
        type=_share,
        default=1.0,
        metavar="R",
        help="Share of requests stored, 0..1 (default %(default)s; 0 turns capture off).",
    )
    capture.add_argument(
        "--capture-max-bytes-per-day",
        type=_positive_int,
        metavar="N",
        help="Most bytes this server stores per UTC day; beyond it requests are not stored (counted).",
    )
    serve.add_argument(
        "--drift-window",
        type=_positive_int,
        default=DEFAULTS.drift_window,
        help="Predictions the drift signal in /metrics looks back over.",
    )
    serve.set_defaults(handler=_cmd_serve)
