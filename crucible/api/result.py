"""The trainer's result contract: one JSON document, under 4 KiB.

The trainer writes it to `result.json` in the output directory and to the container's
termination-message path; the operator reads it back from the pod status. No torch here: the
operator imports this module.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TERMINATION_MESSAGE_LIMIT = 4096
GATE_ORDER = (
    "debug", "crossValidation", "baseline", "finalTraining", "overfitting", "heldOut", "testSets",
)  # fmt: skip


class Check(BaseModel):
    """One measured check of a gate: its value, the threshold it is held to, and the verdict."""

    model_config = ConfigDict(extra="allow")

    value: float | None
    threshold: float
    passed: bool
    # A failed check says what is wrong in the domain's words ("class '7' has no images").
    message: str | None = None


class GateReport(BaseModel):
    model_config = ConfigDict(extra="allow")

    passed: bool
    checks: dict[str, Check] = Field(default_factory=dict)
    # crossValidation only: per-fold scores, their mean and std.
    mean: float | None = None
    std: float | None = None
    folds: list[float] | None = None


class Artifact(BaseModel):
    uri: str
    sha256: str


class Pruning(BaseModel):
    """A tuning trial's link to its study: whether the pruner could see (and stop) it. Unavailable when
    the study proxy could not be reached from the pod, at start or later: the trial then trained on,
    unpruned, to its last epoch."""

    available: bool
    reason: str = ""


class TrainResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    phase: Literal["Succeeded", "Failed"]
    reason: str = ""
    gates: dict[str, GateReport] = Field(default_factory=dict)
    metrics: dict[str, float | None] = Field(default_factory=dict)
    artifact: Artifact | None = None
    # What the run was trained and judged on (dataset, classes, heldOut: short digests), so two runs'
    # comparability can be decided from their results alone (crucible.compare.fingerprint_problems).
    fingerprints: dict[str, str] | None = None
    # Which held-out images the exported model got right (crucible.compare.encode_outcomes: images,
    # stride, bits), so a promotion can test significance from two runs' statuses alone.
    outcomes: dict[str, int | str] | None = None
    # The held-out evaluation in short (classes, per-class precision/recall/f1/support, confusion matrix,
    # the final fit's learning curves), for pages that cannot read the artifact's report.
    evaluation: dict[str, Any] | None = None
    # Only for a tuning trial (crucible-train --study-*): whether it could report to its study.
    pruning: Pruning | None = None

    @property
    def gates_passed(self) -> bool:
        return all(gate.passed for gate in self.gates.values())

    def to_json(self, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
        """Compact JSON that fits the termination message; trims detail, never the verdicts."""
        document = _rounded(self.model_dump(exclude_none=True))
        text = json.dumps(document, separators=(",", ":"))
        if len(text) <= limit:
            return text

        # Too long (many classes or epochs, many folds, long file names, many sources, a long reason):
        # drop what only pages draw (the final fit's curves, then the evaluation summary; model.json keeps
        # it all), then per-fold scores, then the names of skipped files and folders (their counts stay),
        # then each extra source's detail (its image count stays), then the outcome bits a promotion's
        # significance test needs (predictions.json keeps them), and last shorten the reason. result.json
        # is written from this same document.
        def drop(*path: str) -> str:
            holder = document
            for key in path[:-1]:
                holder = holder.get(key) if isinstance(holder.get(key), dict) else {}
            holder.pop(path[-1], None)
            return json.dumps(document, separators=(",", ":"))

        for path in (("evaluation", "curves"), ("evaluation",)):
            if len(text) > limit:
                text = drop(*path)
        if len(text) > limit:
            for gate in document.get("gates", {}).values():
                gate.pop("folds", None)
            text = json.dumps(document, separators=(",", ":"))
        if len(text) > limit:
            drop("dataset", "badFileExamples")
            text = drop("dataset", "ignoredFolders", "names")
        sources = document.get("sources")
        if len(text) > limit and isinstance(sources, dict):
            # Each source down to its image count (the model card keeps the rest).
            document["sources"] = {
                name: entry.get("images") if isinstance(entry, dict) else entry
                for name, entry in sources.items()
            }
            text = json.dumps(document, separators=(",", ":"))
        if len(text) > limit:
            text = drop("outcomes")
        if len(text) > limit:
            excess = len(text) - limit + 3
            document["reason"] = (
                document.get("reason", "")[: max(0, len(document.get("reason", "")) - excess)] + "..."
            )
            text = json.dumps(document, separators=(",", ":"))
        return text


def _rounded(value: Any) -> Any:
    """Round floats to 6 significant digits and turn NaN/inf into null (JSON has neither)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def parse_result(text: str) -> TrainResult:
    """Read a result document (from a termination message or result.json)."""
    return TrainResult.model_validate_json(text)
