"""A TuningJob's status from the study's summary (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from optuna.trial import FrozenTrial

from crucible.api.manifest import InvalidSpec
from crucible.api.status import Condition, TuningJobStatus
from crucible.api.tuningjob import TuningJobSpec
from crucible.operator.kube.conditions import carried_over, condition, now
from crucible.operator.tuningjob.plan import Verdict
from crucible.tuning.summary import summarize

READY, PROGRESSING, PRUNING_AVAILABLE = "Ready", "Progressing", "PruningAvailable"
STUDY_UNREACHABLE = "StudyUnreachable"
FINAL_PHASES = ("Succeeded", "Failed")


def search_status(
    study_name: str,
    trials: Sequence[FrozenTrial],
    spec: TuningJobSpec,
    verdict: Verdict,
    generation: int | None,
    previous: dict,
    pruning: Condition | None = None,
) -> TuningJobStatus:
    """`pruning`: the PruningAvailable condition (pruning_condition), once a trial has reported."""
    summary = summarize(study_name, trials, spec, verdict.phase, verdict.reason)
    counts = summary["trialCounts"]
    finished = counts["complete"] + counts["pruned"] + counts["failed"]
    over = verdict.phase in FINAL_PHASES
    best = summary["bestTrial"]
    if over:
        ready = condition(READY, verdict.phase == "Succeeded", verdict.phase, verdict.reason, generation)
        progressing = condition(PROGRESSING, False, "SearchEnded", verdict.reason, generation)
    else:
        found = (
            f"best so far: trial {best['number']} ({best['value']:.4g})" if best else "no trial complete yet"
        )
        ready = condition(READY, False, "Searching", found, generation)
        progressing = condition(PROGRESSING, True, "TrialsRunning", verdict.reason, generation)
    ended = previous.get("completionTime") if previous.get("phase") in FINAL_PHASES else None
    return TuningJobStatus(
        phase=verdict.phase,  # type: ignore[arg-type]
        reason=verdict.reason,
        study_name=study_name,
        progress=f"{finished}/{spec.max_trials}",
        trial_counts=counts,
        best_trial=best,
        baseline_trial=summary["baselineTrial"],
        observed_generation=generation,
        completion_time=(ended or now()) if over else None,
        conditions=carried_over(previous.get("conditions"), [ready, progressing, *filter(None, [pruning])]),
    )


def pruning_condition(
    trial_statuses: Iterable[dict], address: str, generation: int | None
) -> Condition | None:
    """PruningAvailable from the trials' status.pruning (what their trainer reported, in trial order):
    False as soon as one trained without pruning (its pod could not reach the study proxy), saying how
    many and where they tried; None until a trial has reported."""
    reports = [status["pruning"] for status in trial_statuses if status.get("pruning")]
    if not reports:
        return None
    unpruned = [report for report in reports if not report.get("available")]
    if not unpruned:
        message = f"every trial that ended so far ({len(reports)}) reported to the study proxy at {address}"
        return condition(PRUNING_AVAILABLE, True, "StudyReachable", message, generation)
    message = (
        f"{len(unpruned)} of {len(reports)} trials trained without pruning: their pods could not reach the "
        f"study proxy at {address}; set the chart's tuning.proxyAddress (operator config "
        f"tuning.proxyAddress) to a host trial pods can reach, see docs/install.md. Latest: "
        f"{unpruned[-1].get('reason') or 'no reason given'}"
    )
    return condition(PRUNING_AVAILABLE, False, STUDY_UNREACHABLE, message, generation)


def invalid_status(error: InvalidSpec, generation: int | None, previous: dict) -> TuningJobStatus:
    """A spec the operator cannot search: Failed, naming the field; nothing was started."""
    message = str(error)
    return TuningJobStatus(
        phase="Failed",
        reason=f"InvalidSpec: {message}",
        observed_generation=generation,
        conditions=carried_over(
            previous.get("conditions"),
            [
                condition(READY, False, "InvalidSpec", message, generation),
                condition(PROGRESSING, False, "InvalidSpec", message, generation),
            ],
        ),
    )
