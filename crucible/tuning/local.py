"""Run a TuningJob on this machine: each trial a real trainer run, in-process or in worker processes
sharing the SQLite study in the output directory.

    OUTPUT/study.db            the study (re-running with the same OUTPUT resumes it)
    OUTPUT/trials/NNN/         each trial's trainer output (result.json, report.png, model) and trial.json
    OUTPUT/result.json         the summary: phase, trial counts, best trial, every trial
    OUTPUT/*.png               plots

Torch is imported only when a trial runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from crucible.api.tuningjob import TuningJobSpec
from crucible.tuning.budget import TrialTally, final_phase, free_slots, is_over, stop_reason
from crucible.tuning.outcome import (
    crashed_outcome,
    intermediate_value,
    outcome_of_result,
    pruned_outcome,
    tell,
)
from crucible.tuning.space import apply_params, distributions
from crucible.tuning.study import elapsed_seconds as recorded_elapsed
from crucible.tuning.study import left_running, local_storage, open_study, record_elapsed, resume_trial
from crucible.tuning.summary import TRAINING_RUN_ATTR, summarize, trial_record, trial_run_name

RESULT_FILE = "result.json"
TRIAL_FILE = "trial.json"
RUNNER_LOCK = ".runner.lock"
ASK_LOCK = ".ask.lock"
POLL_SECONDS = 1.0


class SearchBusy(RuntimeError):
    """Another runner is using this output directory."""


def trial_dir(output_dir: Path, number: int) -> Path:
    return output_dir / "trials" / f"{number:03d}"


@contextmanager
def _file_lock(path: Path, blocking: bool = True) -> Iterator[None]:
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SearchBusy(f"another `crucible tune` is using {path.parent}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class PrunedAfterEpoch(optuna.TrialPruned):
    def __init__(self, epoch: int) -> None:
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch


class PruningHook:
    """The trainer's per-epoch callback: report the objective, stop the trial when the pruner says so."""

    def __init__(
        self,
        trial: optuna.Trial,
        spec: TuningJobSpec,
        final_epoch: int,
        after_report: Callable[[], None] | None = None,
    ) -> None:
        self.trial = trial
        self.spec = spec
        self.final_epoch = final_epoch
        self.after_report = after_report
        # A resumed trial already reported its first epochs; training is seeded, so they match.
        self.reported = set(trial.study.get_trials(deepcopy=False)[trial.number].intermediate_values)

    def __call__(self, epoch: int, figures: dict[str, float]) -> None:
        value = intermediate_value(figures, self.spec.objective)
        if value is None:
            return
        if epoch not in self.reported:
            self.trial.report(value, epoch)
        if self.after_report:
            self.after_report()
        # After the last epoch the training is done: stopping it then would only throw it away.
        if epoch < self.final_epoch and self.trial.should_prune():
            raise PrunedAfterEpoch(epoch)


def run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    spec: TuningJobSpec,
    job_name: str,
    output_dir: Path,
    device: str = "auto",
    after_report: Callable[[], None] | None = None,
) -> optuna.trial.FrozenTrial:
    """Train the trial's TrainingRun into OUTPUT/trials/NNN and tell the study how it ended."""
    from crucible.trainer.run import RunContext, train

    run_name = trial_run_name(job_name, trial.number)
    trial.set_user_attr(TRAINING_RUN_ATTR, run_name)
    directory = trial_dir(output_dir, trial.number)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        run_spec = apply_params(spec.template, trial.params)
        hook = PruningHook(trial, spec, run_spec.hyperparameters.epochs, after_report)
        result = train(run_spec, RunContext(run_name, directory, device, on_epoch=hook))
        outcome = outcome_of_result(result, spec.objective)
    except optuna.TrialPruned as pruned:
        outcome = pruned_outcome(getattr(pruned, "epoch", None))
    except Exception as error:  # one broken trial fails itself, not the search
        (directory / "error.txt").write_text(traceback.format_exc())
        outcome = crashed_outcome(error)
    frozen = tell(study, trial, outcome)
    (directory / TRIAL_FILE).write_text(json.dumps(trial_record(frozen), indent=2, default=str) + "\n")
    return frozen


@dataclass
class SearchClock:
    """Seconds searched: earlier runs' total (kept in the study) plus this run's."""

    before: float
    started_at: float = field(default_factory=time.time)

    def elapsed(self) -> float:
        return self.before + (time.time() - self.started_at)


def _tally(study: optuna.Study) -> TrialTally:
    return TrialTally.of(t.state for t in study.get_trials(deepcopy=False))


def ask_next(study: optuna.Study, spec: TuningJobSpec, clock: SearchClock, lock: Path) -> optuna.Trial | None:
    """A new trial when the budget allows one now; None when the search may start no more.
    The lock makes count-then-ask atomic across worker processes."""
    with _file_lock(lock):
        if free_slots(_tally(study), spec, clock.elapsed()) == 0:
            return None
        return study.ask(fixed_distributions=distributions(spec))


def trial_loop(
    study: optuna.Study,
    spec: TuningJobSpec,
    job_name: str,
    output_dir: Path,
    device: str,
    clock: SearchClock,
    resume: list[int],
    after_report: Callable[[], None] | None = None,
) -> None:
    """Finish the trials left running, then run new ones until the budget says stop."""
    for number in resume:
        run_trial(study, resume_trial(study, number), spec, job_name, output_dir, device, after_report)
        if after_report:
            after_report()
    while (trial := ask_next(study, spec, clock, output_dir / ASK_LOCK)) is not None:
        run_trial(study, trial, spec, job_name, output_dir, device, after_report)
        if after_report:
            after_report()


def cpu_sets(cpus: list[int], workers: int) -> list[list[int]]:
    """Split the CPUs among workers so their trials don't fight over cores (each trainer sizes its
    thread pool by the CPUs it may run on)."""
    if workers <= 1 or not cpus:
        return [cpus] * max(workers, 1)
    if workers >= len(cpus):
        return [[cpus[i % len(cpus)]] for i in range(workers)]
    size, extra = divmod(len(cpus), workers)
    sets, start = [], 0
    for i in range(workers):
        end = start + size + (1 if i < extra else 0)
        sets.append(cpus[start:end])
        start = end
    return sets


def _worker_main(
    spec_document: dict,
    job_name: str,
    output_dir: str,
    device: str,
    worker: int,
    cpus: list[int],
    resume: list[int],
    clock: SearchClock,
) -> None:
    """One worker process: its own study handle on the shared SQLite file."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = TuningJobSpec.model_validate(spec_document)
    output = Path(output_dir)
    study = open_study(spec, local_storage(output), job_name, worker=worker)
    # On Ctrl-C the runner reports the interruption; the trial left running is resumed next time.
    with contextlib.suppress(KeyboardInterrupt):
        trial_loop(study, spec, job_name, output, device, clock, resume)


class Monitor:
    """Watches the study and tells a display what changed: finished trials, epochs, counts."""

    def __init__(self, study: optuna.Study, spec: TuningJobSpec, display: Any) -> None:
        self.study, self.spec, self.display = study, spec, display
        # Trials finished by an earlier run were shown then.
        self.shown = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

    def poll(self) -> None:
        trials = self.study.get_trials(deepcopy=False)
        for trial in trials:
            if trial.state.is_finished() and trial.number not in self.shown:
                self.shown.add(trial.number)
                self.display.trial_finished(trial_record(trial))
        running = [trial_record(t) | {"last": _last_value(t)} for t in trials if t.state.name == "RUNNING"]
        self.display.update(summarize(self.study.study_name, trials, self.spec, "Running"), running)


def _last_value(trial: optuna.trial.FrozenTrial) -> float | None:
    if not trial.intermediate_values:
        return None
    return trial.intermediate_values[max(trial.intermediate_values)]


def run_search(
    spec: TuningJobSpec,
    job_name: str,
    output_dir: Path,
    *,
    workers: int = 1,
    device: str = "auto",
    display: Any = None,
) -> dict[str, Any]:
    """Run (or resume) the search; returns the summary also written to OUTPUT/result.json.

    Raises SearchBusy when another runner holds OUTPUT, StudyMismatch when OUTPUT holds a study of
    another search. KeyboardInterrupt leaves the study resumable."""
    from crucible.tuning.display import SilentDisplay
    from crucible.tuning.plots import write_plots

    display = display or SilentDisplay()
    output_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with _file_lock(output_dir / RUNNER_LOCK, blocking=False):
        study = open_study(spec, local_storage(output_dir), job_name)
        clock = SearchClock(before=recorded_elapsed(study))
        monitor = Monitor(study, spec, display)
        resume = left_running(study)
        workers = max(1, min(workers, spec.parallelism))
        display.start(spec, resumed=len(monitor.shown), workers=workers)
        try:
            if workers == 1:
                trial_loop(
                    study, spec, job_name, output_dir, device, clock, resume, after_report=monitor.poll
                )
            else:
                _run_workers(spec, job_name, output_dir, device, workers, clock, resume, monitor)
        finally:
            record_elapsed(study, clock.elapsed())
            display.stop()
        summary = _finish(study, spec, clock)
        summary["plots"] = write_plots(study, spec, output_dir)
        (output_dir / RESULT_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _run_workers(
    spec: TuningJobSpec,
    job_name: str,
    output_dir: Path,
    device: str,
    workers: int,
    clock: SearchClock,
    resume: list[int],
    monitor: Monitor,
) -> None:
    context = multiprocessing.get_context("spawn")  # fork would copy the parent's SQLite connections
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    processes = [
        context.Process(
            target=_worker_main,
            args=(spec.to_dict(), job_name, str(output_dir), device, i, cpu_set, resume[i::workers], clock),
            daemon=True,
        )
        for i, cpu_set in enumerate(cpu_sets(cpus, workers))
    ]
    for process in processes:
        process.start()
    try:
        while any(process.is_alive() for process in processes):
            monitor.poll()
            time.sleep(POLL_SECONDS)
    finally:
        for process in processes:
            process.join(timeout=30)
    monitor.poll()


def _finish(study: optuna.Study, spec: TuningJobSpec, clock: SearchClock) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    tally = TrialTally.of(t.state for t in trials)
    if not is_over(tally, spec, clock.elapsed()):
        phase, reason = "Failed", f"{tally.running} trials were left running; re-run to resume them"
    else:
        phase, reason = final_phase(tally, spec, stop_reason(tally, spec, clock.elapsed()) or "")
    summary = summarize(study.study_name, trials, spec, phase, reason)
    summary["elapsedSeconds"] = round(clock.elapsed(), 1)
    summary["trials"] = [trial_record(t) for t in trials]
    return summary
