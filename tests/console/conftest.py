"""Fixtures of the console tests: a local runs/ directory as `crucible train` and `crucible tune` leave
it (a digits training, a run stopped by its cross-validation gate, a three-trial search), and the
console serving it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import fast_spec
from tests.tuning.jobs import job_spec

SEARCH = "small-search"
FAILED_RUN = "strict-cv"


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory, digits_artifact: Path) -> Path:
    from crucible.trainer.run import RunContext, train
    from crucible.tuning.local import run_search

    runs = tmp_path_factory.mktemp("console") / "runs"
    shutil.copytree(digits_artifact, runs / "digits-tiny")
    strict = fast_spec(
        dataset={"imageSize": 8, "sampleFraction": 0.5},
        gates={"debug": {"enabled": False}, "crossValidation": {"folds": 2, "epochs": 1, "minMean": 0.999}},
    )
    result = train(strict, RunContext(name=FAILED_RUN, output_dir=runs / FAILED_RUN, device="cpu"))
    assert result.phase == "Failed", result
    summary = run_search(job_spec(maxTrials=3), SEARCH, runs / SEARCH, device="cpu")
    assert summary["trialCounts"]["complete"] == 3, summary
    return runs


@pytest.fixture
def console_client(runs_dir: Path) -> Iterator:
    from fastapi.testclient import TestClient

    from crucible.console.app import create_app
    from crucible.console.local import LocalSource

    with TestClient(create_app(LocalSource(runs_dir))) as client:
        yield client
