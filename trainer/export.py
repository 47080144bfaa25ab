"""Write the artifact: weights, model.json and result.json, and the termination message."""

from __future__ import annotations

import contextlib
import json
import platform
from pathlib import Path

import torch
import torchvision
from torch import nn

import crucible
from crucible.api.result import TrainResult
from crucible.checksums import sha256_of

WEIGHTS_FILE = "model.pt"
MODEL_FILE = "model.json"
RESULT_FILE = "result.json"
REPORT_FILE = "report.png"
# The exported model's held-out predictions, for paired comparisons of two runs (crucible compare).
PREDICTIONS_FILE = "predictions.json"
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")


def library_versions() -> dict[str, str]:
    return {
        "crucible": crucible.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }


def save_weights(model: nn.Module, output_dir: Path) -> str:
    """Save a CPU state dict (loadable with weights_only=True) and return its sha256."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / WEIGHTS_FILE
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    torch.save(state, path)
    return sha256_of(path)


def write_model_card(output_dir: Path, card: dict) -> None:
    (output_dir / MODEL_FILE).write_text(json.dumps(card, indent=2) + "\n")


def write_predictions(
    output_dir: Path, held_out_fingerprint: str, labels: list[int], predictions: list[int], names: list[str]
) -> None:
    document = {
        "heldOutFingerprint": held_out_fingerprint,
        "labels": labels,
        "predictions": predictions,
        "names": names,
    }
    (output_dir / PREDICTIONS_FILE).write_text(json.dumps(document, separators=(",", ":")) + "\n")


def write_result_file(result: TrainResult, output_dir: Path) -> str:
    """result.json beside the artifact; returns the compact document (the termination message)."""
    text = result.to_json()
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RESULT_FILE).write_text(json.dumps(json.loads(text), indent=2) + "\n")
    return text


def write_result(result: TrainResult, output_dir: Path, termination_log: Path | None) -> str:
    """result.json beside the artifact, and the same document as the termination message."""
    text = write_result_file(result, output_dir)
    if termination_log is not None:
        termination_log.parent.mkdir(parents=True, exist_ok=True)
        termination_log.write_text(text)
    elif DEFAULT_TERMINATION_LOG.exists():
        # Outside a container the default path may not be ours; result.json has it all.
        with contextlib.suppress(OSError):
            DEFAULT_TERMINATION_LOG.write_text(text)
    return text
