"""When a search may start trials and when it is over."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from crucible.tuning.budget import TrialTally, final_phase, free_slots, is_over, stop_reason, trial_limit
from tests.tuning.jobs import job_spec

C, P, F, R, W = (
    TrialState.COMPLETE,
    TrialState.PRUNED,
    TrialState.FAIL,
    TrialState.RUNNING,
    TrialState.WAITING,
)


def test_tally_counts_by_state():
    tally = TrialTally.of([C, C, P, F, R, W])
    assert tally.as_status() == {"complete": 2, "pruned": 1, "failed": 1, "running": 1, "waiting": 1}
    assert (tally.started, tally.finished) == (5, 4)


@pytest.mark.parametrize(
    ("states", "overrides", "elapsed", "reason"),
    [
        ([C, C], {"maxTrials": 3}, 0, None),
        ([C, C, R], {"maxTrials": 3}, 0, "reached maxTrials (3)"),
        ([C, P, F], {"maxTrials": 3}, 0, "reached maxTrials (3)"),
        ([C, W], {"maxTrials": 2}, 0, None),  # an enqueued trial has not started yet
        ([C], {"maxTrials": 9, "timeoutSeconds": 60}, 59.9, None),
        ([C], {"maxTrials": 9, "timeoutSeconds": 60}, 60, "reached timeoutSeconds (60)"),
        ([F, F], {"maxTrials": 9, "maxFailedTrials": 2}, 0, None),
        ([F, F, F], {"maxTrials": 9, "maxFailedTrials": 2}, 0, "3 trials failed, more than maxFailedTrials (2)"),
        ([C, C], {"maxTrials": 9, "sampler": {"type": "grid"}, "searchSpace": {"hyperparameters.batchSize": {"type": "categorical", "choices": [32, 64]}}}, 0, "visited every point of the grid (2)"),
    ],
)  # fmt: skip
def test_stop_reason(states, overrides, elapsed, reason):
    assert stop_reason(TrialTally.of(states), job_spec(**overrides), elapsed) == reason


def test_free_slots_respect_parallelism_and_the_trial_budget():
    spec = job_spec(maxTrials=5, parallelism=2)
    assert free_slots(TrialTally.of([]), spec, 0) == 2
    assert free_slots(TrialTally.of([R]), spec, 0) == 1
    assert free_slots(TrialTally.of([R, R]), spec, 0) == 0
    assert free_slots(TrialTally.of([C, C, C, R]), spec, 0) == 1  # one left of five
    assert free_slots(TrialTally.of([C, C, C, C, C]), spec, 0) == 0
    assert trial_limit(spec) == 5


def test_the_search_is_over_when_nothing_runs_and_nothing_may_start():
    spec = job_spec(maxTrials=2)
    assert not is_over(TrialTally.of([C, R]), spec, 0)
    assert is_over(TrialTally.of([C, P]), spec, 0)


def test_final_phase():
    spec = job_spec(maxTrials=3, maxFailedTrials=1)
    assert final_phase(TrialTally.of([C, P, F]), spec, "reached maxTrials (3)") == (
        "Succeeded",
        "reached maxTrials (3)",
    )
    assert final_phase(TrialTally.of([C, F, F]), spec, "2 trials failed")[0] == "Failed"
    phase, reason = final_phase(TrialTally.of([P, F, P]), job_spec(maxTrials=3), "reached maxTrials (3)")
    assert (phase, reason) == ("Failed", "no trial completed (1 failed, 2 pruned); reached maxTrials (3)")
