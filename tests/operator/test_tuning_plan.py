"""A TuningJob's reconcile decisions, its trial manifests and status, without a cluster."""

from __future__ import annotations

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from crucible.api.manifest import InvalidSpec
from crucible.api.tuningjob import TuningJobSpec
from crucible.operator.config import OperatorConfig
from crucible.operator.kube import naming
from crucible.operator.trainingrun.plan import study_args
from crucible.operator.tuningjob.manifests import trial_run
from crucible.operator.tuningjob.plan import plan_step, verdict
from crucible.operator.tuningjob.reconcile import check_spec
from crucible.operator.tuningjob.status import invalid_status, search_status
from crucible.tuning.budget import TrialTally
from crucible.tuning.outcome import PRUNED_EPOCH_ATTR
from crucible.tuning.space import apply_params
from tests.conftest import FAST_SPEC

SPACE = {"hyperparameters.learningRate": {"type": "float", "low": 0.001, "high": 0.1, "log": True}}
LR = FloatDistribution(0.001, 0.1, log=True)


def spec(**extra: object) -> TuningJobSpec:
    return TuningJobSpec.model_validate(
        {"template": FAST_SPEC, "searchSpace": SPACE, "maxTrials": 4, "parallelism": 2, **extra}
    )


def trial(
    number: int, state: TrialState = TrialState.RUNNING, value: float | None = None, **attrs: object
) -> FrozenTrial:
    made = create_trial(
        state=state,
        value=value,
        params={"hyperparameters.learningRate": 0.01},
        distributions={"hyperparameters.learningRate": LR},
        user_attrs=dict(attrs),
    )
    made.number = number
    return made


def test_an_empty_study_asks_for_parallelism_trials() -> None:
    assert plan_step([], {}, spec(), 0).ask == 2


def test_a_trial_asked_without_a_child_is_created_not_asked_again() -> None:
    step = plan_step([trial(0)], {}, spec(), 0)
    assert (step.create, step.ask, step.tell) == ([0], 1, {})


def test_a_running_child_holds_its_slot() -> None:
    step = plan_step([trial(0), trial(1)], {0: {"phase": "Running"}, 1: {}}, spec(), 0)
    assert (step.create, step.ask, step.tell) == ([], 0, {})


def test_finished_children_are_told_and_free_their_slots() -> None:
    children = {
        0: {"phase": "Succeeded", "metrics": {"valBalancedAccuracy": 0.93, "accuracy": 0.95}},
        1: {"phase": "Failed", "reason": "debug gate failed: overfitOneBatch"},
    }
    step = plan_step([trial(0), trial(1)], children, spec(), 0)
    assert step.tell[0].state == TrialState.COMPLETE and step.tell[0].value == 0.93
    assert step.tell[1].state == TrialState.FAIL and "debug gate" in step.tell[1].reason
    assert step.ask == 2


def test_a_run_its_pod_pruned_is_told_pruned_not_failed() -> None:
    step = plan_step(
        [trial(0, **{PRUNED_EPOCH_ATTR: 2})],
        {0: {"phase": "Failed", "reason": "pruned at epoch 2"}},
        spec(),
        0,
    )
    assert step.tell[0].state == TrialState.PRUNED


def test_a_succeeded_run_without_the_objective_fails_its_trial() -> None:
    step = plan_step([trial(0)], {0: {"phase": "Succeeded", "metrics": {}}}, spec(), 0)
    assert step.tell[0].state == TrialState.FAIL


def test_max_trials_and_the_timeout_stop_asking() -> None:
    done = [trial(n, TrialState.COMPLETE, 0.9) for n in range(3)]
    assert plan_step([*done, trial(3)], {3: {"phase": "Running"}}, spec(), 0).ask == 0
    assert plan_step(done, {}, spec(timeoutSeconds=10), 11).ask == 0
    assert plan_step(done, {}, spec(timeoutSeconds=10), 9).ask == 1


def test_verdicts() -> None:
    assert verdict(TrialTally(complete=2, running=1), spec(), 0).phase == "Running"
    assert verdict(TrialTally(complete=4), spec(), 0).phase == "Succeeded"
    assert verdict(TrialTally(failed=2, complete=2), spec(maxFailedTrials=1), 0).phase == "Failed"
    assert verdict(TrialTally(pruned=4), spec(), 0).phase == "Failed"  # none completed


def test_a_trial_run_is_named_labelled_and_annotated_for_its_study() -> None:
    body = trial_run(
        "digits",
        "ml",
        "ml.digits.uid",
        7,
        apply_params(spec().template, {"hyperparameters.learningRate": 0.02}),
    )
    assert body["metadata"]["name"] == "digits-trial-007"
    assert body["metadata"]["labels"][naming.TUNING_JOB] == "digits"
    assert body["metadata"]["labels"][naming.TRIAL_NUMBER] == "7"
    assert body["metadata"]["annotations"] == {naming.STUDY: "ml.digits.uid", naming.TRIAL_NUMBER: "7"}
    assert body["spec"]["hyperparameters"]["learningRate"] == 0.02


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("pvc://models/search", "pvc://models/search/digits-trial-007"),
        ("s3://bucket/runs/", "s3://bucket/runs/digits-trial-007"),
        ("searches/digits", "searches/digits/digits-trial-007"),
    ],
)
def test_a_template_output_uri_is_each_trials_base_never_one_shared_directory(
    base: str, expected: str
) -> None:
    template = spec().template
    template = template.model_copy(update={"output": template.output.model_copy(update={"uri": base})})
    assert trial_run("digits", "ml", "ml.digits.uid", 7, template)["spec"]["output"]["uri"] == expected
    assert template.output.uri == base  # the template itself is left as it was
    without = trial_run("digits", "ml", "ml.digits.uid", 7, spec().template)["spec"].get("output") or {}
    assert without.get("uri") is None  # no base: the operator's default gives each run its own directory


@pytest.mark.parametrize(
    ("owner_kind", "expected"), [("TuningJob", True), ("ModelDeployment", False), (None, False)]
)
def test_only_a_tuning_jobs_trial_gets_study_flags(owner_kind: str | None, expected: bool) -> None:
    body = trial_run("tj", "ml", "ml.tj.uid", 3, spec().template)
    if owner_kind:
        body["metadata"]["ownerReferences"] = [
            {
                "apiVersion": naming.API_VERSION_STRING,
                "kind": owner_kind,
                "name": "tj",
                "uid": "u",
                "controller": True,
            }
        ]
    args = study_args(body, OperatorConfig())
    if expected:
        assert args == (
            "--study-storage",
            "grpc://crucible-operator.crucible-system.svc:13000",
            "--study-name",
            "ml.tj.uid",
            "--trial-number",
            "3",
        )
    else:
        assert args == ()


def test_per_job_storage_is_refused_naming_the_field() -> None:
    document = {"spec": {**spec().to_dict(), "storage": {"type": "sqlite", "volumeClaim": "mine"}}}
    with pytest.raises(InvalidSpec, match=r"^spec\.storage:"):
        check_spec(document)
    with pytest.raises(InvalidSpec, match=r"spec\.searchSpace\.hyperparameters\.learningRate\.low"):
        check_spec(
            {
                "spec": {
                    **spec().to_dict(),
                    "searchSpace": {"hyperparameters.learningRate": {"type": "float", "low": 1, "high": 0.1}},
                }
            }
        )


def test_status_counts_progress_best_and_conditions() -> None:
    trials = [
        trial(0, TrialState.COMPLETE, 0.91),
        trial(1, TrialState.COMPLETE, 0.95, trainingRun="tj-trial-001"),
        trial(2),
    ]
    status = search_status("s", trials, spec(), verdict(TrialTally(complete=2, running=1), spec(), 0), 1, {})
    assert status.progress == "2/4" and status.phase == "Running"
    assert status.best_trial.number == 1 and status.best_trial.training_run == "tj-trial-001"
    assert [(c.type, c.status) for c in status.conditions] == [("Ready", "False"), ("Progressing", "True")]
    patch = invalid_status(InvalidSpec("spec.x", "bad"), 1, {}).to_patch()
    assert patch["phase"] == "Failed" and patch["conditions"][0]["reason"] == "InvalidSpec"
