"""When a search may start another trial, and when it is over: pure decisions over trial counts.

A trial counts against maxTrials from the moment it is asked for (running, then finished), so a
restarted runner that resumes its running trials never starts more than maxTrials in all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

from optuna.trial import TrialState

from crucible.api.tuningjob import TuningJobSpec

SearchPhase = Literal["Succeeded", "Failed"]


@dataclass(frozen=True)
class TrialTally:
    """Trials of a study by state (waiting = enqueued, not started yet)."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0

    @classmethod
    def of(cls, states: Iterable[TrialState]) -> TrialTally:
        counts = dict.fromkeys(("complete", "pruned", "failed", "running", "waiting"), 0)
        names = {
            TrialState.COMPLETE: "complete",
            TrialState.PRUNED: "pruned",
            TrialState.FAIL: "failed",
            TrialState.RUNNING: "running",
            TrialState.WAITING: "waiting",
        }
        for state in states:
            counts[names[state]] += 1
        return cls(**counts)

    @property
    def started(self) -> int:
        return self.complete + self.pruned + self.failed + self.running

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed

    def as_status(self) -> dict[str, int]:
        return asdict(self)


def trial_limit(spec: TuningJobSpec) -> int:
    """maxTrials, or fewer when a grid has fewer points."""
    if spec.sampler.type == "grid":
        return min(spec.max_trials, spec.grid_size())
    return spec.max_trials


def stop_reason(tally: TrialTally, spec: TuningJobSpec, elapsed_seconds: float) -> str | None:
    """Why no further trial may start, or None while the search goes on."""
    if spec.max_failed_trials is not None and tally.failed > spec.max_failed_trials:
        return f"{tally.failed} trials failed, more than maxFailedTrials ({spec.max_failed_trials})"
    limit = trial_limit(spec)
    if tally.started >= limit:
        if limit < spec.max_trials:
            return f"visited every point of the grid ({limit})"
        return f"reached maxTrials ({spec.max_trials})"
    if spec.timeout_seconds is not None and elapsed_seconds >= spec.timeout_seconds:
        return f"reached timeoutSeconds ({spec.timeout_seconds})"
    return None


def free_slots(tally: TrialTally, spec: TuningJobSpec, elapsed_seconds: float) -> int:
    """How many trials may start now: at most `parallelism` running, at most maxTrials in all."""
    if stop_reason(tally, spec, elapsed_seconds) is not None:
        return 0
    return max(0, min(spec.parallelism - tally.running, trial_limit(spec) - tally.started))


def is_over(tally: TrialTally, spec: TuningJobSpec, elapsed_seconds: float) -> bool:
    """Nothing runs and nothing more may start."""
    return tally.running == 0 and stop_reason(tally, spec, elapsed_seconds) is not None


def final_phase(tally: TrialTally, spec: TuningJobSpec, reason: str) -> tuple[SearchPhase, str]:
    """Succeeded when the search ran its course with at least one complete trial; Failed when too
    many trials failed or none completed."""
    if spec.max_failed_trials is not None and tally.failed > spec.max_failed_trials:
        return "Failed", reason
    if tally.complete == 0:
        return "Failed", f"no trial completed ({tally.failed} failed, {tally.pruned} pruned); {reason}"
    return "Succeeded", reason
