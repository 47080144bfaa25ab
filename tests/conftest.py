"""Fixtures shared by every part's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Idle torch worker threads spin by default; on a shared 2-core machine that slows every other
# test process several-fold. Set before anything imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

from crucible.api.trainingrun import TrainingRunSpec
from tests.cluster.fixtures import (  # noqa: F401 (fixtures: the real control plane, for every part)
    cluster_controllers,
    control_plane,
    crucible_crds,
    kube_api,
    namespace,
)
from tests.s3_store import S3Store

# A spec that trains in a few seconds on 2 CPU cores and still learns digits well (~0.95).
FAST_SPEC = {
    "seed": 7,
    "dataset": {"source": "digits", "imageSize": 16},
    "model": {"architecture": "tiny_cnn", "dropout": 0.1},
    "hyperparameters": {"epochs": 4, "batchSize": 64, "learningRate": 0.01},
    "gates": {
        "debug": {"overfitSteps": 30},
        "crossValidation": {"folds": 3, "epochs": 2, "minMean": 0.8, "maxStd": 0.1},
        "overfitting": {"maxGap": 0.1},
    },
}


def fast_spec(**overrides: dict) -> TrainingRunSpec:
    """FAST_SPEC with nested overrides, e.g. fast_spec(gates={"debug": {"enabled": False}})."""

    def merge(base: dict, extra: dict) -> dict:
        merged = dict(base)
        for key, value in extra.items():
            merged[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
        return merged

    return TrainingRunSpec.model_validate(merge(FAST_SPEC, overrides))


@pytest.fixture(scope="session")
def digits_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real artifact directory (model.pt, model.json, result.json) of a tiny CNN trained on digits."""
    from crucible.trainer.run import RunContext, train

    output = tmp_path_factory.mktemp("digits-artifact")
    result = train(fast_spec(), RunContext(name="digits-tiny", output_dir=output, device="cpu"))
    assert result.phase == "Succeeded", result.reason
    return output


@pytest.fixture(scope="session")
def s3_store() -> Iterator[S3Store]:
    """moto's S3 server on 127.0.0.1, a free port, for the whole session (tests use buckets of their own)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield S3Store(f"http://{host}:{port}")
    server.stop()
