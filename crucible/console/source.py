"""What the console reads, whichever the place: the interface both sources implement."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

TUNING_JOB_LABEL = "crucible.dev/tuning-job"
TRIAL_NUMBER_LABEL = "crucible.dev/trial-number"
# The labels the operator puts on the pods of a run's trainer Job and of a deployment's servers.
POD_LABELS = {"TrainingRun": "crucible.dev/training-run", "ModelDeployment": "crucible.dev/model-deployment"}
TRACK_LABEL = "crucible.dev/track"
KINDS = ("TrainingRun", "TuningJob", "ModelDeployment")


class NotFound(LookupError):
    """No such object: the page answers 404 with this message."""


class Source(Protocol):
    """Objects shaped like custom resources: {kind, metadata {name, namespace, labels,
    creationTimestamp}, spec, status}; a TrainingRun may carry `card` (its model.json)."""

    description: str  # where the console reads from, for the page header
    has_pods: bool  # whether objects run as pods there (a cluster) or as local processes

    def list(self, kind: str) -> list[dict]: ...

    def get(self, kind: str, namespace: str, name: str) -> dict: ...

    def events(self, kind: str, namespace: str, name: str) -> list[dict]:
        """{type, reason, message, count, lastTimestamp}, newest last."""
        ...

    def pods(self, kind: str, namespace: str, name: str) -> list[dict]:
        """The pods behind the object: {name, phase, ready, restarts, track, started}."""
        ...

    def file(self, kind: str, namespace: str, name: str, filename: str) -> Path | None:
        """A picture beside the object (report.png, the study's plots), where the source has files."""
        ...
