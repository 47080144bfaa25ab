"""The server's knobs, each with a default and a one-line description."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSettings:
    # Most images in one forward pass; a single request holding more runs as a batch of its own.
    max_batch_size: int = 32
    # Longest a queued request waits for others to share its forward pass (only under load).
    max_batch_delay_ms: float = 5.0
    # Largest request body accepted; larger ones get 413 before they are read in full.
    max_body_bytes: int = 32 * 1024 * 1024
    # Most images one request may hold (the batch dimension of an infer input, or uploaded files).
    max_images: int = 64
    # Labels returned per image by /predict when the request does not say.
    default_top_k: int = 5
    # Most images waiting for a model's forward pass; more get 503 and Retry-After at once instead of
    # a late answer (and the 503s show in the error rate a canary is judged by).
    max_queue_images: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_body_bytes", "max_images", "default_top_k", "max_queue_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_batch_delay_ms < 0:
            raise ValueError(f"max_batch_delay_ms must not be negative, got {self.max_batch_delay_ms}")
