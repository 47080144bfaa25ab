"""The console's view of a local `runs/` directory, read fresh on every request (files change while
`crucible train` and `crucible tune` run).

    runs/<run>/model.json, result.json, report.png             a `crucible train` output
    runs/<job>/study.db, result.json, *.png, trials/NNN/...    a `crucible tune` output; each trial
                                                               directory is a run of its own

Runs get the labels the operator gives a TuningJob's trials on a cluster, so the same label filter works.
A trial directory without result.json is a run still training; a search with such a trial is running.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from crucible.console.source import TRIAL_NUMBER_LABEL, TUNING_JOB_LABEL, NotFound

NAMESPACE = "local"
RUN_PICTURES = ("report.png",)
STUDY_PICTURES = ("optimization_history.png", "param_importances.png")


def _read_json(path: Path) -> dict | None:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent, or being written at this moment: the next refresh reads it
    return document if isinstance(document, dict) else None


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_search(directory: Path) -> bool:
    return (directory / "study.db").exists() or (directory / "trials").is_dir()


def _is_run(directory: Path) -> bool:
    return any((directory / name).exists() for name in ("model.json", "result.json", "trial.json"))


def read_run(directory: Path, labels: dict[str, str] | None = None, running: bool = False) -> dict:
    """One run directory as a TrainingRun-shaped dict."""
    card = _read_json(directory / "model.json") or {}
    result = _read_json(directory / "result.json")
    trial = _read_json(directory / "trial.json") or {}
    name = card.get("name") or trial.get("trainingRun") or directory.name
    if result is None:
        phase = "Running" if running else "Failed"
        status = {"phase": phase, "reason": "" if running else "no result.json: the run did not finish"}
        error = directory / "error.txt"
        if error.exists():
            status = {"phase": "Failed", "reason": error.read_text().strip().splitlines()[-1]}
    else:
        # What the operator copies from the result into a TrainingRun's status, so pages read one shape.
        copied = ("phase", "reason", "gates", "metrics", "artifact", "fingerprints", "outcomes", "evaluation")
        status = {key: result.get(key) for key in copied}
    created = card.get("createdAt") or _timestamp(directory.stat().st_mtime)
    return {
        "kind": "TrainingRun",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": labels or {},
            "creationTimestamp": created,
        },
        "spec": card.get("spec") or {},
        "status": status,
        "card": card or None,
        "directory": str(directory),
    }


def _trial_dirs(directory: Path) -> list[Path]:
    trials = directory / "trials"
    return sorted(path for path in trials.iterdir() if path.is_dir()) if trials.is_dir() else []


def _trial_runs(directory: Path) -> list[dict]:
    runs = []
    for trial_dir in _trial_dirs(directory):
        finished = (trial_dir / "trial.json").exists()
        labels = {TUNING_JOB_LABEL: directory.name, TRIAL_NUMBER_LABEL: str(int(trial_dir.name))}
        runs.append(read_run(trial_dir, labels, running=not finished))
    return runs


def read_search(directory: Path) -> dict:
    """One `crucible tune` output as a TuningJob-shaped dict; its trials under status.trials."""
    result = _read_json(directory / "result.json") or {}
    records = {}
    for record in result.get("trials", []):
        records[record["number"]] = record
    for trial_dir in _trial_dirs(directory):
        # A trial's own record is the latest word on it; without one it is training now.
        number = int(trial_dir.name)
        records[number] = _read_json(trial_dir / "trial.json") or {
            "number": number,
            "state": "RUNNING",
            "trainingRun": f"{directory.name}-trial-{number:03d}",
        }
    trials = [records[number] for number in sorted(records)]
    running = any(trial.get("state") == "RUNNING" for trial in trials)
    status = {
        key: result.get(key)
        for key in (
            "phase",
            "reason",
            "studyName",
            "trialCounts",
            "bestTrial",
            "baselineTrial",
            "elapsedSeconds",
        )
    }
    if running or not result:
        counts: dict[str, int] = {}
        for trial in trials:
            state = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}.get(
                str(trial.get("state")), "waiting"
            )
            counts[state] = counts.get(state, 0) + 1
        status.update(phase="Running", reason="", trialCounts=counts)
    status["trials"] = trials
    objective = result.get("objective") or {}
    spec = {"objective": objective, "maxTrials": result.get("maxTrials")}
    created = _timestamp(min((p.stat().st_mtime for p in [directory, *_trial_dirs(directory)]), default=0))
    return {
        "kind": "TuningJob",
        "metadata": {
            "name": directory.name,
            "namespace": NAMESPACE,
            "labels": {},
            "creationTimestamp": created,
        },
        "spec": spec,
        "status": status,
        "directory": str(directory),
    }


class LocalSource:
    """A `runs/` directory of `crucible train` and `crucible tune` outputs, as the console reads it."""

    has_pods = False

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise FileNotFoundError(f"--runs: {root} is not a directory")
        self.root = root
        self.description = f"local runs in {root}"

    def _directories(self) -> list[Path]:
        return sorted(path for path in self.root.iterdir() if path.is_dir() and not path.name.startswith("."))

    def list(self, kind: str) -> list[dict]:
        if kind == "TrainingRun":
            runs = []
            for directory in self._directories():
                if _is_search(directory):
                    runs.extend(_trial_runs(directory))
                elif _is_run(directory):
                    runs.append(read_run(directory))
            return runs
        if kind == "TuningJob":
            return [read_search(directory) for directory in self._directories() if _is_search(directory)]
        return []  # ModelDeployments exist on a cluster only

    def get(self, kind: str, namespace: str, name: str) -> dict:
        if namespace == NAMESPACE:
            for item in self.list(kind):
                if item["metadata"]["name"] == name:
                    return item
        raise NotFound(f"{kind} {namespace}/{name} not found in {self.root}")

    def events(self, kind: str, namespace: str, name: str) -> list[dict]:
        return []  # Events are a cluster's record

    def pods(self, kind: str, namespace: str, name: str) -> list[dict]:
        return []  # local runs have no pods

    def file(self, kind: str, namespace: str, name: str, filename: str) -> Path | None:
        allowed = RUN_PICTURES if kind == "TrainingRun" else STUDY_PICTURES
        if filename not in allowed:
            return None
        path = Path(self.get(kind, namespace, name)["directory"]) / filename
        return path if path.is_file() else None
