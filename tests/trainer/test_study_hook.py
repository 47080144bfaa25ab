"""A trial pod's study hook against a real gRPC storage proxy (in this process, on a free port): it
reports every epoch, and a pruned run ends Failed with `pruned: true`, exit 1, no model."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from crucible.api.tuningjob import TuningJobSpec
from crucible.operator.tuningjob.config import TuningConfig
from crucible.operator.tuningjob.study_store import StudyStore
from crucible.trainer import cli
from crucible.trainer.study_hook import StudyHook, StudyTrial, TrialPruned, Unpruned, connect, hook_or_none
from crucible.tuning.outcome import PRUNED_EPOCH_ATTR
from crucible.tuning.space import distributions
from crucible.tuning.study import open_study
from tests.conftest import FAST_SPEC

QUICK = {
    **FAST_SPEC,
    "hyperparameters": {"epochs": 3, "batchSize": 64, "learningRate": 0.001},
    "gates": {
        "debug": {"enabled": False},
        "crossValidation": {"enabled": False},
        "overfitting": {"enabled": False},
    },
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def proxy(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = TuningConfig.model_validate(
        {
            "study": {"path": str(tmp_path / "study")},
            "proxyAddress": "127.0.0.1",
            "proxyBind": "127.0.0.1",
            "proxyPort": free_port(),
        }
    )
    store = StudyStore(config)
    store.storage()
    yield store
    store.close()


def search(pruner: dict) -> TuningJobSpec:
    return TuningJobSpec.model_validate(
        {
            "template": QUICK,
            "searchSpace": {
                "hyperparameters.learningRate": {"type": "float", "low": 0.0005, "high": 0.1, "log": True}
            },
            "pruner": pruner,
            "baselineTrial": False,
        }
    )


def study_with_a_perfect_trial(store: StudyStore, spec: TuningJobSpec) -> optuna.Study:
    """Trial 0 scored 1.0 at every epoch: any real trial is worse, so the median pruner stops it."""
    study = open_study(spec, store.storage(), "default.tj.uid")
    perfect = study.ask(fixed_distributions=distributions(spec))
    for epoch in (1, 2, 3):
        perfect.report(1.0, epoch)
    study.tell(perfect, 1.0)
    return study


def train_trial(store: StudyStore, tmp_path: Path, number: int) -> tuple[int, Path]:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(QUICK))
    output = tmp_path / f"trial-{number}"
    code = cli.main(
        [
            "--spec",
            str(spec_file),
            "--name",
            f"tj-trial-{number:03d}",
            "--output",
            str(output),
            "--termination-log",
            str(tmp_path / f"termination-{number}"),
            "--device",
            "cpu",
            "--json",
            "--study-storage",
            store.config.proxy_url(),
            "--study-name",
            "default.tj.uid",
            "--trial-number",
            str(number),
        ]
    )
    return code, output


def test_a_pruned_trial_ends_failed_with_pruned_true_and_no_model(proxy: StudyStore, tmp_path: Path) -> None:
    study = study_with_a_perfect_trial(proxy, search({"type": "median", "nStartupTrials": 1}))
    trial = study.ask(fixed_distributions=distributions(search({})))

    code, output = train_trial(proxy, tmp_path, trial.number)

    assert code == cli.EXIT_FAILED
    result = json.loads((tmp_path / f"termination-{trial.number}").read_text())
    assert result["phase"] == "Failed" and result["pruned"] is True
    assert result["reason"].startswith("pruned at epoch 1 (valBalancedAccuracy 0.")
    assert json.loads((output / "result.json").read_text())["pruned"] is True
    assert not (output / "model.pt").exists()
    frozen = study.get_trials()[trial.number]
    assert frozen.state == TrialState.RUNNING  # the operator tells the outcome, from the TrainingRun
    assert frozen.user_attrs[PRUNED_EPOCH_ATTR] == 1
    assert list(frozen.intermediate_values) == [1]


def test_an_unpruned_trial_reports_every_epoch_and_succeeds(proxy: StudyStore, tmp_path: Path) -> None:
    study = study_with_a_perfect_trial(proxy, search({"type": "none"}))
    trial = study.ask(fixed_distributions=distributions(search({})))

    code, output = train_trial(proxy, tmp_path, trial.number)

    assert code == 0
    assert (output / "model.pt").is_file()
    assert sorted(study.get_trials()[trial.number].intermediate_values) == [1, 2, 3]
    result = json.loads((tmp_path / f"termination-{trial.number}").read_text())
    assert result["pruning"] == {"available": True, "reason": ""}


def test_an_unreachable_proxy_is_an_error_for_connect() -> None:
    trial = StudyTrial(f"grpc://127.0.0.1:{free_port()}", "s", 0)
    with pytest.raises(ConnectionError):
        connect(trial, final_epoch=3, timeout=0.5)


def test_an_unreachable_proxy_trains_on_and_the_result_says_pruning_was_unavailable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 12, defect 17: where trial pods cannot reach the study proxy, the trial trains without
    pruning, and its result names the address it tried."""
    address = f"grpc://127.0.0.1:{free_port()}"
    hook = hook_or_none(StudyTrial(address, "s", 4), final_epoch=3, timeout=0.5)

    assert isinstance(hook, Unpruned)
    hook(1, {"accuracy": 0.5})  # trains on
    report = hook.report()
    assert report.available is False
    assert report.reason.startswith(f"the study proxy {address} could not be reached at start (")
    assert "training without pruning" in capsys.readouterr().err
    assert hook_or_none(None, final_epoch=3) is None  # not a trial: nothing to report


def test_proxy_errors_never_end_the_run_but_pruning_does(capsys: pytest.CaptureFixture[str]) -> None:
    class Broken:
        def __call__(self, epoch: int, figures: dict) -> None:
            raise RuntimeError("UNAVAILABLE")

    hook = StudyHook(Broken(), "accuracy", "grpc://crucible.crucible-system.svc:13000")
    assert hook.report().available is True
    hook(1, {"accuracy": 0.5})
    hook(2, {"accuracy": 0.6})
    assert capsys.readouterr().err.count("cannot report to the study") == 1
    assert hook.report().model_dump() == {
        "available": False,
        "reason": "the study proxy grpc://crucible.crucible-system.svc:13000 could not be reached at epoch 1 "
        "(RuntimeError: UNAVAILABLE)",
    }
    assert issubclass(TrialPruned, Exception) and not issubclass(TrialPruned, RuntimeError)


@pytest.mark.parametrize(
    "argv",
    [["--study-name", "s"], ["--study-storage", "http://x:1", "--study-name", "s", "--trial-number", "0"]],
)
def test_study_flags_go_together_and_need_a_grpc_address(argv: list[str], tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(QUICK))
    assert cli.main(["--spec", str(spec_file), "--output", str(tmp_path / "out"), *argv]) == cli.EXIT_INVALID
