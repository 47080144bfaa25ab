"""The run's progress on disk, next to the artifact, so a restarted trainer continues where it stopped.

One file, `checkpoint.pt`, rewritten atomically after every epoch and every finished
cross-validation fold: the finished gates, the scores of finished folds, and the training state of
the running fold or of the final training (weights, optimizer, scheduler, scaler, RNG states,
epoch). It belongs to one spec on one dataset: a checkpoint of anything else is not resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from crucible.api.trainingrun import TrainingRunSpec

CHECKPOINT_FILE = "checkpoint.pt"


def run_key(spec: TrainingRunSpec, dataset_fingerprint: str, device: torch.device) -> str:
    """What must be equal for a checkpoint to be resumed: the spec (where it runs aside), the data and
    the kind of device."""
    document = spec.to_dict()
    for ignored in ("resources", "output"):
        document.pop(ignored, None)
    text = json.dumps([document, dataset_fingerprint, device.type], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class Checkpoint:
    def __init__(self, output_dir: Path, key: str) -> None:
        self.path = output_dir / CHECKPOINT_FILE
        self.key = key
        self.state: dict = {"key": key}

    def resume(self) -> bool:
        """Load the checkpoint of this run if there is one; False when starting afresh."""
        if not self.path.is_file():
            return False
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # a file cut short by a kill mid-write is no checkpoint
            return False
        if not isinstance(state, dict) or state.get("key") != self.key:
            return False
        self.state = state
        return True

    def update(self, **parts: object) -> None:
        self.state.update(parts)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        torch.save(self.state, partial)
        os.replace(partial, self.path)  # a kill mid-write leaves the previous checkpoint whole

    def discard(self) -> None:
        """The run is over (its result is written): a later run on this output starts afresh."""
        self.path.unlink(missing_ok=True)
