"""Opening the durable study a TuningJob searches in, and picking up where a stopped search left off.

Whoever drives the search (the local runner, the operator) opens the study with `open_study`, asks
for trials, and tells outcomes. All state lives in the study's storage, so a restarted driver
carries on with the same trials: those left running are resumed under their own numbers (their
training is seeded, so a rerun reports the same values), never asked for again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState

from crucible.api.tuningjob import TuningJobSpec
from crucible.tuning.algorithms import build_pruner, build_sampler
from crucible.tuning.space import baseline_params
from crucible.tuning.summary import BASELINE_ATTR

FINGERPRINT_ATTR = "crucible.searchFingerprint"
ELAPSED_ATTR = "crucible.searchSeconds"
# The spec as last opened: a trial pod reads its objective and pruner from it (it has only its own
# TrainingRun spec), so the pruner it asks is the one the search was configured with.
SPEC_ATTR = "crucible.searchSpec"
STUDY_FILE = "study.db"
# Workers of one search write to one SQLite file; wait for its lock rather than fail a trial.
SQLITE_LOCK_TIMEOUT_S = 120


class StudyMismatch(ValueError):
    """The storage holds a study of that name for a different search."""


def search_fingerprint(spec: TuningJobSpec) -> str:
    """What makes two specs the same search: template, space and objective. Budget, parallelism,
    sampler and pruner settings may change between runs of one study."""
    document = spec.to_dict()
    searched = {key: document[key] for key in ("template", "searchSpace", "objective")}
    searched["objective"]["direction"] = spec.objective.resolved_direction()
    return hashlib.sha256(json.dumps(searched, sort_keys=True).encode()).hexdigest()[:16]


def local_storage(output_dir: Path) -> RDBStorage:
    """SQLite in the output directory: re-running with the same directory resumes the study."""
    output_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(output_dir / STUDY_FILE).resolve()}"
    return RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}})


def open_study(
    spec: TuningJobSpec, storage: str | BaseStorage, study_name: str, worker: int = 0
) -> optuna.Study:
    """Create the study, or load it when it exists; enqueue the baseline trial into a new study.

    `worker` distinguishes processes that sample concurrently, so their sampler seeds differ.
    Raises StudyMismatch when a study of that name was made for another search.
    """
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=spec.objective.resolved_direction(),
        load_if_exists=True,
        pruner=build_pruner(spec),
    )
    fingerprint = search_fingerprint(spec)
    recorded = study.user_attrs.get(FINGERPRINT_ATTR)
    if recorded is None:
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
    elif recorded != fingerprint:
        raise StudyMismatch(
            f"study {study_name!r} was made for another search (its template, searchSpace or objective "
            "differ); use another output directory or study name"
        )
    if study.user_attrs.get(SPEC_ATTR) != spec.to_dict():
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
    existing = study.get_trials(deepcopy=False)
    # A resumed search continues the seeded sequence instead of drawing its first values again.
    study.sampler = build_sampler(spec, seed_offset=len(existing) + 1_000_003 * worker)
    if not existing and spec.baseline_trial and spec.sampler.type != "grid":
        baseline = baseline_params(spec)
        if baseline is not None:
            study.enqueue_trial(baseline, user_attrs={BASELINE_ATTR: True})
    return study


def left_running(study: optuna.Study) -> list[int]:
    """Numbers of trials still marked running: after a restart, those whose driver went away."""
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]


def resume_trial(study: optuna.Study, number: int) -> optuna.Trial:
    """A handle on a trial left running, to report to and tell as if it had just been asked for.

    Optuna has no public call for this; `optuna.Trial(study, trial_id)` is how its own ask builds
    the handle, and the trial id is the frozen trial's."""
    frozen = study.get_trials(deepcopy=False)[number]
    if frozen.state != TrialState.RUNNING:
        raise ValueError(f"trial {number} is {frozen.state.name}, not RUNNING")
    return optuna.Trial(study, frozen._trial_id)


def elapsed_seconds(study: optuna.Study) -> float:
    """Time spent searching in earlier runs (the timeout counts across restarts)."""
    return float(study.user_attrs.get(ELAPSED_ATTR, 0.0))


def record_elapsed(study: optuna.Study, seconds: float) -> None:
    study.set_user_attr(ELAPSED_ATTR, round(seconds, 3))
