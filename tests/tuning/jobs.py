"""TuningJob specs for tests: small searches over the fast digits template (1-2 s a trial)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from crucible.api.tuningjob import TuningJobSpec
from tests.conftest import FAST_SPEC


def merged(base: dict, extra: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in extra.items():
        result[key] = (
            merged(base.get(key, {}), value) if isinstance(value, dict) and key != "searchSpace" else value
        )
    return result


# Half of digits at their own 8x8 size, three epochs, the gates that take time (debug,
# cross-validation) off: about a second a trial on 2 idle cores.
FAST_TEMPLATE = merged(
    FAST_SPEC,
    {
        "dataset": {"imageSize": 8, "sampleFraction": 0.5},
        "hyperparameters": {"epochs": 3},
        "gates": {"debug": {"enabled": False}, "crossValidation": {"enabled": False}},
    },
)

FAST_JOB = {
    "template": FAST_TEMPLATE,
    "searchSpace": {
        "hyperparameters.learningRate": {"type": "float", "low": 0.003, "high": 0.03, "log": True},
        "hyperparameters.batchSize": {"type": "categorical", "choices": [32, 64]},
    },
    "sampler": {"type": "random", "seed": 11},
    "pruner": {"type": "none"},
    "maxTrials": 3,
}


def job_document(**overrides) -> dict:
    """FAST_JOB with nested overrides (searchSpace is replaced whole)."""
    return merged(FAST_JOB, overrides)


def job_spec(**overrides) -> TuningJobSpec:
    return TuningJobSpec.model_validate(job_document(**overrides))


def write_job(path: Path, spec: dict, name: str = "tiny-search") -> Path:
    body = {
        "apiVersion": "crucible.dev/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": name},
        "spec": spec,
    }
    path.write_text(yaml.safe_dump(body))
    return path
