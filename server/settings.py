"""The server's knobs, each with a default and a one-line description."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_DRIFT_WINDOW = 1000


@dataclass(frozen=True)
class CaptureSettings:
    # Where to store: a directory or s3://bucket/prefix; None: capture is off.
    destination: str | None = None
    # The share of requests stored, 0..1.
    sample_rate: float = 1.0
    # Most bytes one server writes per UTC day; None: no limit.
    max_bytes_per_day: int | None = None
    # Most captured requests waiting to be written; beyond it they are dropped (counted).
    queue_size: int = 1024
    # Most items the writer takes off the queue at once.
    batch_size: int = 64
    # How long a stopping server keeps writing what is queued before it drops the rest.
    drain_seconds: float = 10.0
    # Most CPU time the writer takes, as a share of wall time: under heavy load capture costs serving
    # at most this much, and what the writer cannot keep up with is dropped (counted as queue_full).
    max_cpu_share: float = 0.05

    def __post_init__(self) -> None:
        if not 0 <= self.sample_rate <= 1:
            raise ValueError(f"capture sample rate must be within 0..1, got {self.sample_rate}")
        if self.max_bytes_per_day is not None and self.max_bytes_per_day < 1:
            raise ValueError(f"capture max bytes per day must be at least 1, got {self.max_bytes_per_day}")
        if not 0 < self.max_cpu_share <= 1:
            raise ValueError(f"capture max_cpu_share must be within (0, 1], got {self.max_cpu_share}")
        if self.queue_size < 1 or self.batch_size < 1:
            raise ValueError("capture queue_size and batch_size must be at least 1")

    @property
    def enabled(self) -> bool:
        return bool(self.destination) and self.sample_rate > 0


@dataclass(frozen=True)
class ServerSettings:
    # Most images in one forward pass; a single request holding more runs as a batch of its own.
    max_batch_size: int = 32
    # Longest a queued request waits for others to share its forward pass (only under load).
    max_batch_delay_ms: float = 5.0
    # Time the forward pass at start-up and form batches no larger than the cheapest per image
    # (`calibration`); off: batches fill up to max_batch_size.
    calibrate_batch_size: bool = True
    # Largest request body accepted; larger ones get 413 before they are read in full.
    max_body_bytes: int = 32 * 1024 * 1024
    # Most images one request may hold (the batch dimension of an infer input, or uploaded files).
    max_images: int = 64
    # Labels returned per image by /predict when the request does not say.
    default_top_k: int = 5
    # Most images waiting for a model's forward pass; more get 503 and Retry-After at once instead of
    # a late answer (and the 503s show in the error rate a canary is judged by).
    max_queue_images: int = 1024
    # Predictions the drift signal looks back over (the predicted-class shares in /metrics).
    drift_window: int = DEFAULT_DRIFT_WINDOW
    # Storing a sampled share of requests for labelling (off unless a destination is set).
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    # CPUs the server may use (its quota). With one, uploaded images are decoded on the event loop:
    # a decoding thread could not run beside it, and handing each upload to one and back costs about
    # 0.6 ms of CPU, as much as decoding a 224-pixel JPEG. With more, threads decode side by side.
    cpus: int = 2

    def __post_init__(self) -> None:
        for name in (
            "max_batch_size",
            "max_body_bytes",
            "max_images",
            "default_top_k",
            "max_queue_images",
            "drift_window",
            "cpus",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_batch_delay_ms < 0:
            raise ValueError(f"max_batch_delay_ms must not be negative, got {self.max_batch_delay_ms}")
