"""A trial pod's link to its study: report the objective after every epoch through the operator's
gRPC storage proxy, and stop the run when the pruner says so.

The pod knows only its TrainingRun spec; the objective and the pruner come from the search spec the
operator records on the study (`crucible.searchSpec`). Pruning is an optimisation, never a reason to
lose a trial: when the proxy cannot be reached (the operator restarting, an address the pod cannot
reach), the run trains on and the operator tells the study its outcome from the TrainingRun's status as
usual. The result says so (`pruning.available: false`, with the address and the error), so the
TuningJob can tell that its trials train without pruning.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from crucible.api.result import Pruning

CONNECT_TIMEOUT_S = 30.0
GRPC_SCHEME = "grpc"


class TrialPruned(Exception):
    """The pruner stopped the trial after `epoch`: the run ends Failed with `pruned: true`."""

    def __init__(self, epoch: int, detail: str) -> None:
        super().__init__(f"pruned at epoch {epoch} ({detail})")
        self.epoch = epoch


@dataclass(frozen=True)
class StudyTrial:
    """Which trial of which study this run is (from `--study-storage`, `--study-name`, `--trial-number`)."""

    storage: str
    study_name: str
    number: int

    def address(self) -> tuple[str, int]:
        """host and port of a `grpc://host:port` URL; ValueError naming the flag otherwise."""
        parts = urlsplit(self.storage)
        if parts.scheme != GRPC_SCHEME or not parts.hostname or not parts.port:
            raise ValueError(f"--study-storage: expected grpc://host:port, got {self.storage!r}")
        return parts.hostname, parts.port


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class StudyHook:
    """The trainer's `on_epoch`: the local runner's PruningHook, plus what a pod must add: the pruned
    epoch recorded on the trial, and proxy errors that never end the run."""

    def __init__(self, pruning: Any, metric: str, storage: str = "") -> None:
        self.pruning = pruning  # crucible.tuning.local.PruningHook
        self.metric = metric
        self.storage = storage
        self.warned = False
        self.lost = ""  # why reporting stopped working, from the first failed epoch on

    def report(self) -> Pruning:
        """For the result: whether every epoch reached the study."""
        return Pruning(available=not self.lost, reason=self.lost)

    def __call__(self, epoch: int, figures: dict[str, float]) -> None:
        from crucible.tuning.local import PrunedAfterEpoch
        from crucible.tuning.outcome import PRUNED_EPOCH_ATTR

        try:
            self.pruning(epoch, figures)
        except PrunedAfterEpoch:
            self.pruning.trial.set_user_attr(PRUNED_EPOCH_ATTR, epoch)
            value = figures.get(self.metric)
            shown = f"{self.metric} {value:.4f}" if value is not None else self.metric
            raise TrialPruned(epoch, f"{shown}, worse than earlier trials at that epoch") from None
        except Exception as error:  # the proxy is away: train on, unpruned, rather than lose the trial
            if not self.warned:
                _warn(f"cannot report to the study ({type(error).__name__}: {error}); training on")
                self.warned = True
                self.lost = unreachable(self.storage, error, f"at epoch {epoch}")


def connect(trial: StudyTrial, final_epoch: int, timeout: float | None = None) -> StudyHook:
    """The hook for this trial. Raises when the proxy, the study or the trial cannot be found."""
    import optuna
    from optuna.storages import GrpcStorageProxy

    from crucible.api.tuningjob import TuningJobSpec
    from crucible.tuning.algorithms import build_pruner
    from crucible.tuning.local import PruningHook
    from crucible.tuning.study import SPEC_ATTR, resume_trial

    host, port = trial.address()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # experimental since Optuna 4.2; the pinned range includes it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = GrpcStorageProxy(host=host, port=port)
    storage.wait_server_ready(timeout=timeout or CONNECT_TIMEOUT_S)
    study = optuna.load_study(study_name=trial.study_name, storage=storage)
    spec = TuningJobSpec.model_validate(study.user_attrs[SPEC_ATTR])
    study.pruner = build_pruner(spec)
    handle = resume_trial(study, trial.number)
    return StudyHook(PruningHook(handle, spec, final_epoch), spec.objective.metric, trial.storage)


def unreachable(storage: str, error: BaseException, when: str) -> str:
    """Why a trial trained without pruning, naming the address its pod could not reach."""
    detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    shown = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
    return f"the study proxy {storage} could not be reached {when} ({shown})"


class Unpruned:
    """The trial's `on_epoch` when its study could not be reached at start: it trains on, unpruned."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __call__(self, epoch: int, figures: dict[str, float]) -> None:
        pass

    def report(self) -> Pruning:
        return Pruning(available=False, reason=self.reason)


def hook_or_none(
    trial: StudyTrial | None, final_epoch: int, timeout: float | None = None
) -> StudyHook | Unpruned | None:
    """`connect`, or (with a warning) an Unpruned hook when that fails: the run then trains without
    pruning, and its result says why. None for a run that is no trial."""
    if trial is None:
        return None
    try:
        return connect(trial, final_epoch, timeout)
    except Exception as error:
        _warn(f"trial {trial.number} of study {trial.study_name!r}: {error}; training without pruning")
        return Unpruned(unreachable(trial.storage, error, "at start"))
