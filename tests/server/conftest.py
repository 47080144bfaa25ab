"""Fixtures of the server tests: the digits model loaded once, the app around it, real digit images,
and a real `crucible serve` process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from crucible.server.app import create_app
from crucible.server.repository import Model, ModelRepository, load_artifact
from crucible.server.settings import ServerSettings
from tests.server.helpers import ServerProcess


@pytest.fixture(scope="session")
def digits_model(digits_artifact: Path) -> Model:
    model = load_artifact(digits_artifact, torch.device("cpu"))
    model.warm_up()
    return model


@pytest.fixture
def client(digits_model: Model) -> Iterator[TestClient]:
    """The real app around the digits model, its inference worker running."""
    with TestClient(
        create_app(ModelRepository([digits_model]), ServerSettings(max_images=10))
    ) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def digit_pixels() -> tuple[np.ndarray, np.ndarray]:
    """Ten real handwritten digits (one per class) as uint8 RGB pixels [10, 3, 16, 16], and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    first_of_each = [int(np.flatnonzero(digits.target == d)[0]) for d in range(10)]
    images = []
    for index in first_of_each:
        gray = Image.fromarray((digits.images[index] * (255 / 16)).astype(np.uint8), mode="L")
        rgb = gray.resize((16, 16), Image.BILINEAR).convert("RGB")
        images.append(np.asarray(rgb).transpose(2, 0, 1))
    return np.stack(images), digits.target[first_of_each]


@pytest.fixture(scope="session")
def live_server(digits_artifact: Path) -> Iterator[str]:
    """A real `crucible serve` of the digits model on 127.0.0.1, a random free port; its base URL.

    The batch delay is long so that the batching test can see requests share a forward pass even
    on a slow, shared CPU.
    """
    server = ServerProcess("--model", str(digits_artifact), "--port", "0", "--max-batch-delay-ms", "200")
    base_url = server.wait_until_serving()
    yield base_url
    assert server.stop() == 0, server.output
