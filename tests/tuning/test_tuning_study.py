"""The durable study: created once, resumed with the same trials, refused for another search."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from crucible.tuning.space import distributions
from crucible.tuning.study import (
    StudyMismatch,
    elapsed_seconds,
    left_running,
    local_storage,
    open_study,
    record_elapsed,
    resume_trial,
)
from tests.tuning.jobs import job_spec

LR = "hyperparameters.learningRate"


def test_a_new_study_starts_with_the_baseline_enqueued_once(tmp_path):
    spec = job_spec()
    study = open_study(spec, local_storage(tmp_path), "digits")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1
    trial = study.ask(fixed_distributions=distributions(spec))
    assert trial.params == {LR: 0.01, "hyperparameters.batchSize": 64}
    assert trial.user_attrs == {"baseline": True}
    study.tell(trial, 0.9)
    again = open_study(spec, local_storage(tmp_path), "digits")
    assert len(again.trials) == 1  # no second baseline
    assert (tmp_path / "study.db").is_file()


def test_no_baseline_when_turned_off_or_outside_the_space(tmp_path):
    assert open_study(job_spec(baselineTrial=False), local_storage(tmp_path / "a"), "x").trials == []
    outside = job_spec(searchSpace={LR: {"type": "float", "low": 0.05, "high": 0.1}})
    assert open_study(outside, local_storage(tmp_path / "b"), "x").trials == []


def test_a_study_made_for_another_search_is_refused(tmp_path):
    open_study(job_spec(), local_storage(tmp_path), "digits")
    # The budget may change between runs of one search...
    open_study(job_spec(maxTrials=10, parallelism=2), local_storage(tmp_path), "digits")
    # ...the space may not.
    changed = job_spec(searchSpace={LR: {"type": "float", "low": 0.001, "high": 0.01}})
    with pytest.raises(StudyMismatch, match="was made for another search"):
        open_study(changed, local_storage(tmp_path), "digits")


def test_a_resumed_seeded_search_does_not_draw_its_first_values_again(tmp_path):
    spec = job_spec(baselineTrial=False)

    def draw(count: int) -> list[float]:
        study = open_study(spec, local_storage(tmp_path), "digits")
        values = []
        for _ in range(count):
            trial = study.ask(fixed_distributions=distributions(spec))
            study.tell(trial, 0.5)
            values.append(trial.params[LR])
        return values

    first, resumed = draw(3), draw(3)
    assert not set(first) & set(resumed)
    fresh = open_study(spec, local_storage(tmp_path / "fresh"), "digits")
    assert fresh.ask(fixed_distributions=distributions(spec)).params[LR] == first[0]  # still seeded


def test_a_trial_left_running_is_resumed_under_its_own_number(tmp_path):
    spec = job_spec(baselineTrial=False)
    study = open_study(spec, local_storage(tmp_path), "digits")
    trial = study.ask(fixed_distributions=distributions(spec))
    trial.report(0.8, 1)
    # The driver goes away here; a new one opens the same storage.
    reopened = open_study(spec, local_storage(tmp_path), "digits")
    assert left_running(reopened) == [0]
    handle = resume_trial(reopened, 0)
    assert handle.number == 0 and handle.params == trial.params
    handle.report(0.9, 2)
    reopened.tell(handle, 0.95)
    [done] = reopened.trials
    assert (done.number, done.state, done.value, done.intermediate_values) == (
        0,
        TrialState.COMPLETE,
        0.95,
        {1: 0.8, 2: 0.9},
    )
    with pytest.raises(ValueError, match="not RUNNING"):
        resume_trial(reopened, 0)


def test_search_time_is_kept_in_the_study(tmp_path):
    study = open_study(job_spec(), local_storage(tmp_path), "digits")
    assert elapsed_seconds(study) == 0.0
    record_elapsed(study, 12.5)
    assert elapsed_seconds(open_study(job_spec(), local_storage(tmp_path), "digits")) == 12.5
