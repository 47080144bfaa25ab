"""The resources the operator watches, as kopf names them, and how handlers retry."""

from __future__ import annotations

from crucible import API_GROUP, API_VERSION

TRAINING_RUNS = (API_GROUP, API_VERSION, "trainingruns")
TUNING_JOBS = (API_GROUP, API_VERSION, "tuningjobs")
MODEL_DEPLOYMENTS = (API_GROUP, API_VERSION, "modeldeployments")
# Seconds before a handler that raised (an API error, a child not there yet) runs again.
RETRY_BACKOFF = 10
