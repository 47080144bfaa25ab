"""Canary analysis from the servers' Prometheus text (pure): counters summed over the candidate's pods,
a window as the change between two reads, and a verdict against spec.rollout.analysis.

Only inference requests count (the infer and predict endpoints): health probes and metric scrapes
would otherwise dilute the error rate and the latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.parser import text_string_to_metric_families

from crucible.api.modeldeployment import AnalysisSpec

REQUESTS = "crucible_server_requests"
LATENCY = "crucible_server_request_duration_seconds"
INFERENCE_SUFFIXES = ("/infer", "/predict")
PASS, FAIL, INCONCLUSIVE = "Pass", "Fail", "Inconclusive"


def is_inference(endpoint: str) -> bool:
    return endpoint.endswith(INFERENCE_SUFFIXES)


@dataclass(frozen=True)
class Counters:
    """Cumulative inference counters, as a server exposes them (or their sum over pods)."""

    requests: float = 0
    errors: float = 0
    # Upper bound of each latency bucket (seconds, +Inf included) -> cumulative count.
    buckets: dict[float, float] = field(default_factory=dict)

    def __add__(self, other: Counters) -> Counters:
        bounds = set(self.buckets) | set(other.buckets)
        summed = {le: self.buckets.get(le, 0) + other.buckets.get(le, 0) for le in bounds}
        return Counters(self.requests + other.requests, self.errors + other.errors, summed)

    def since(self, before: Counters) -> Counters:
        """The change from `before`. Counters only grow: a drop means pods restarted (or were replaced),
        and then the new counts are the whole window."""
        if self.requests < before.requests or self.errors < before.errors:
            return self
        buckets = {le: max(0.0, count - before.buckets.get(le, 0)) for le, count in self.buckets.items()}
        return Counters(self.requests - before.requests, self.errors - before.errors, buckets)


def parse(text: str) -> Counters:
    """Inference counters of one server's /metrics text."""
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            endpoint = sample.labels.get("endpoint", "")
            if not is_inference(endpoint):
                continue
            if sample.name == f"{REQUESTS}_total":
                requests += sample.value
                if sample.labels.get("code", "").startswith("5"):
                    errors += sample.value
            elif sample.name == f"{LATENCY}_bucket":
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0) + sample.value
    return Counters(requests, errors, buckets)


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile of a cumulative histogram, in seconds, interpolated linearly inside its bucket
    (as Prometheus' histogram_quantile does); None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):  # above the highest finite bucket: its bound is the best estimate
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


@dataclass(frozen=True)
class Analysis:
    """A window's verdict and the figures it rests on."""

    result: str  # PASS, FAIL or INCONCLUSIVE
    requests: int
    error_rate: float | None
    latency_p95_ms: float | None
    message: str


def analyse(window: Counters, limits: AnalysisSpec) -> Analysis:
    """FAIL when the error rate or p95 latency is over its limit, INCONCLUSIVE below minRequests."""
    requests = int(window.requests)
    if requests == 0 or requests < limits.min_requests:
        message = f"{requests} inference requests, {limits.min_requests} needed for a verdict"
        return Analysis(INCONCLUSIVE, requests, None, None, message)
    error_rate = window.errors / window.requests
    p95 = quantile(window.buckets, 0.95)
    p95_ms = None if p95 is None else round(p95 * 1000, 3)
    figures = f"{requests} requests, error rate {error_rate:.4f}, p95 {p95_ms} ms"
    if error_rate > limits.max_error_rate:
        return Analysis(
            FAIL,
            requests,
            error_rate,
            p95_ms,
            f"error rate {error_rate:.4f} > {limits.max_error_rate} ({figures})",
        )
    if p95_ms is not None and p95_ms > limits.max_latency_p95_ms:
        return Analysis(
            FAIL,
            requests,
            error_rate,
            p95_ms,
            f"p95 latency {p95_ms} ms > {limits.max_latency_p95_ms} ms ({figures})",
        )
    return Analysis(PASS, requests, error_rate, p95_ms, figures)


@dataclass(frozen=True)
class Sample:
    """Counters read at a time."""

    time: datetime
    counters: Counters
