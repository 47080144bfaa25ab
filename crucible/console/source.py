"""What the console reads, whichever the place: the interface both sources implement."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

TUNING_JOB_LABEL = "crucible.dev/tuning-job"
TRIAL_NUMBER_LABEL = "crucible.dev/trial-number"
KINDS = ("TrainingRun", "TuningJob", "ModelDeployment")


class NotFound(LookupError):
    """No such object: the page answers 404 with this message."""


class Source(Protocol):
    """Objects shaped like custom resources: {kind, metadata {name, namespace, labels,
    creationTimestamp}, spec, status}; a TrainingRun may carry `card` (its model.json)."""

    description: str  # where the console reads from, for the page header

    def list(self, kind: str) -> list[dict]: ...

    def get(self, kind: str, namespace: str, name: str) -> dict: ...

    def events(self, kind: str, namespace: str, name: str) -> list[dict]:
        """{type, reason, message, count, lastTimestamp}, newest last."""
        ...

    def file(self, kind: str, namespace: str, name: str, filename: str) -> Path | None:
        """A picture beside the object (report.png, the study's plots), where the source has files."""
        ...
