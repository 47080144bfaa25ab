"""Prometheus metrics of one app, on its own registry (two apps in one process never share counts).

Canary analysis reads these: the error rate from `crucible_server_requests_total` by `code`, latency
from `crucible_server_request_duration_seconds`. Requests are labelled by route template
(`/v2/models/{name}/infer`), never by raw path, and unusual methods share one label, so a scan of
random URLs cannot blow up the number of series.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
UNMATCHED = "unmatched"
# Any token is a valid HTTP method; only these get their own series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._request_children: dict[tuple[str, str, int], tuple] = {}
        self.requests = Counter(
            "crucible_server_requests",
            "HTTP requests by endpoint (route template), method and status code.",
            ["endpoint", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "crucible_server_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "crucible_server_batch_size",
            "Images per forward pass.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "crucible_server_inference_duration_seconds",
            "Time of one forward pass, input preparation and softmax included.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "crucible_server_queue_depth",
            "Images waiting for a forward pass.",
            ["model"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "crucible_server_model_info",
            "The model served: always 1, its identity in the labels.",
            ["model", "version", "architecture", "sha256"],
            registry=self.registry,
        )

        self.capture_writes = Counter(
            "crucible_capture_writes",
            "Captured requests written to the capture destination, by outcome (ok, error).",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.capture_dropped = Counter(
            "crucible_capture_dropped",
            "Sampled requests not stored, by reason (queue_full, max_bytes_per_day, shutdown).",
            ["model", "reason"],
            registry=self.registry,
        )
        self.class_share = Gauge(
            "crucible_predicted_class_share",
            "Share of each predicted class over the last predictions (the drift window).",
            ["model", "class"],
            registry=self.registry,
        )
        self.top_score_mean = Gauge(
            "crucible_prediction_top_score_mean",
            "Mean top-1 score over the drift window.",
            ["model"],
            registry=self.registry,
        )
        self.drift = Gauge(
            "crucible_prediction_drift",
            "Jensen-Shannon divergence (base 2, 0..1) between the drift window's predicted classes and "
            "the training class distribution.",
            ["model"],
            registry=self.registry,
        )
        # Called before each rendering: gauges computed from state kept elsewhere (the drift window).
        self.before_render: list[Callable[[], None]] = []

    def observe_request(self, endpoint: str, method: str, code: int, seconds: float) -> None:
        if method not in KNOWN_METHODS:
            method = "other"
        key = (endpoint, method, code)
        children = self._request_children.get(key)
        if children is None:  # label lookup takes a lock; it is done once per series
            children = (self.requests.labels(endpoint, method, str(code)), self.latency.labels(endpoint))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(size)
        self.inference_seconds.labels(model).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        for refresh in self.before_render:
            refresh()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestMetricsMiddleware:
    """Counts every HTTP request by route and status, and times it (plain ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees when the app fails before it answers

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            # The router writes the matched route into the shared scope.
            endpoint = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe_request(endpoint, scope["method"], status, time.perf_counter() - started)
