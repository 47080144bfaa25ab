"""Helpers of the server tests: real digit images, the model's own output, requests, metrics, and
a real `crucible serve` process."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

MODEL_NAME = "digits-tiny"  # the name the shared digits_artifact fixture trains under


def png_bytes(pixels_chw: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels_chw.transpose(1, 2, 0))).save(buffer, format="PNG")
    return buffer.getvalue()


def reference_probabilities(artifact: Path, pixels: np.ndarray | None = None, normalized=None) -> np.ndarray:
    """The model's own output, computed the trainer's way without any server code: rebuild the network
    from model.json and model.pt, scale pixels by 1/255, normalize, softmax."""
    from crucible.trainer.models import build_model

    card = json.loads((artifact / "model.json").read_text())
    network = build_model(card["architecture"], card["numClasses"], card["dropout"])
    network.load_state_dict(torch.load(artifact / "model.pt", map_location="cpu", weights_only=True))
    network.eval()
    if normalized is None:
        mean = torch.tensor(card["normalization"]["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(card["normalization"]["std"]).view(1, 3, 1, 1)
        normalized = (torch.from_numpy(pixels).float() / 255 - mean) / std
    with torch.no_grad():
        return torch.softmax(network(torch.as_tensor(normalized)), dim=1).numpy()


def normalize(artifact: Path, pixels: np.ndarray) -> np.ndarray:
    card = json.loads((artifact / "model.json").read_text())
    mean = np.array(card["normalization"]["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(card["normalization"]["std"], dtype=np.float32).reshape(1, 3, 1, 1)
    return ((pixels.astype(np.float32) / 255 - mean) / std).astype(np.float32)


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the Prometheus text format (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def infer_body(pixels: np.ndarray, datatype: str = "UINT8", **extra) -> dict:
    return {
        "inputs": [
            {
                "name": "input",
                "datatype": datatype,
                "shape": list(pixels.shape),
                "data": pixels.ravel().tolist(),
            }
        ],
        **extra,
    }


class ServerProcess:
    """`crucible serve` in a child process, its output collected on a thread (a full pipe would block it)."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "crucible", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_until_serving(self, timeout: float = 90) -> str:
        """The base URL once uvicorn says it listens (port 0 lets it pick a free one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", self.output)
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"server did not start:\n{self.output}")

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30) -> int:
        self.terminate()
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        return code
