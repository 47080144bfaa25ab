"""Deterministic names and labels of the objects the operator creates.

A child's name depends only on its owner's name, so a restarted operator finds what it created
before instead of creating a duplicate.
"""

from __future__ import annotations

import hashlib
import re

from crucible import API_GROUP, API_VERSION

API_VERSION_STRING = f"{API_GROUP}/{API_VERSION}"
LABEL_MAX = 63

NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
PART_OF = "app.kubernetes.io/part-of"
MANAGED_BY = "app.kubernetes.io/managed-by"
TRAINING_RUN = f"{API_GROUP}/training-run"
MODEL_DEPLOYMENT = f"{API_GROUP}/model-deployment"
TRACK = f"{API_GROUP}/track"
# A TuningJob's trials: labels to find them by, annotations the trainer Job's study flags come from.
TUNING_JOB = f"{API_GROUP}/tuning-job"
TRIAL_NUMBER = f"{API_GROUP}/trial-number"
STUDY = f"{API_GROUP}/study"
MANAGER = "crucible-operator"

# What the operator watches its own Jobs and Deployments by.
TRAINER_SELECTOR = {MANAGED_BY: MANAGER, COMPONENT: "trainer"}
SERVER_SELECTOR = {MANAGED_BY: MANAGER, COMPONENT: "server"}


def _digest(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def child_name(owner: str, suffix: str, limit: int = LABEL_MAX) -> str:
    """`<owner>-<suffix>`, shortened with a hash of the owner's name when it would pass `limit`.

    63 characters is the DNS label limit that Services and Job pods (through their job-name label)
    impose; owner names may be up to 253.
    """
    name = f"{owner}-{suffix}"
    if len(name) <= limit:
        return name
    keep = limit - len(suffix) - 10
    return f"{owner[:keep].rstrip('-.')}-{_digest(owner)}-{suffix}"


def label_value(text: str) -> str:
    """`text` as a valid label value (63 characters of [A-Za-z0-9._-], alphanumeric at both ends)."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", text).strip("-_.")
    if len(value) > LABEL_MAX:
        value = f"{value[: LABEL_MAX - 9].rstrip('-_.')}-{_digest(text)}"
    return value


def training_labels(run: str) -> dict[str, str]:
    return {
        NAME: "crucible-trainer",
        INSTANCE: label_value(run),
        COMPONENT: "trainer",
        PART_OF: "crucible",
        MANAGED_BY: MANAGER,
        TRAINING_RUN: label_value(run),
    }


def server_selector(deployment: str) -> dict[str, str]:
    """Pods of one ModelDeployment, every track: what its Service and PodDisruptionBudget select."""
    return {NAME: "crucible-server", INSTANCE: label_value(deployment)}


def server_labels(deployment: str, track: str = "stable") -> dict[str, str]:
    return {
        **server_selector(deployment),
        COMPONENT: "server",
        PART_OF: "crucible",
        MANAGED_BY: MANAGER,
        MODEL_DEPLOYMENT: label_value(deployment),
        TRACK: track,
    }


def job_name(run: str) -> str:
    return child_name(run, "train")


def spec_config_map_name(run: str) -> str:
    return child_name(run, "spec", limit=253)


def deployment_name(model_deployment: str, track: str = "stable") -> str:
    return child_name(model_deployment, track)


def service_name(model_deployment: str) -> str:
    return child_name(model_deployment, "server")


def stable_service_name(model_deployment: str) -> str:
    return child_name(model_deployment, "stable")


def disruption_budget_name(model_deployment: str) -> str:
    return child_name(model_deployment, "server", limit=253)
