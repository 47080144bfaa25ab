"""A TuningJob's child: the TrainingRun of one trial (pure builder)."""

from __future__ import annotations

from crucible.api.trainingrun import TrainingRunSpec
from crucible.operator.kube import naming
from crucible.tuning.summary import trial_run_name


def trial_labels(job: str, number: int) -> dict[str, str]:
    return {
        naming.TUNING_JOB: naming.label_value(job),
        naming.TRIAL_NUMBER: str(number),
        naming.PART_OF: "crucible",
        naming.MANAGED_BY: naming.MANAGER,
    }


def trial_run(job: str, namespace: str, study: str, number: int, spec: TrainingRunSpec) -> dict:
    """Trial `number` as a TrainingRun named `<job>-trial-NNN`: the same name whoever creates it, so a
    restarted operator finds it instead of making a second. The annotations become the trainer's
    --study-name and --trial-number (trainingrun/plan.py, study_args); the spec is the template's, values
    set. A template's output.uri is a base: each trial writes below it, in a directory of its own, so no
    trial writes over another's artifact."""
    name = trial_run_name(job, number)
    if spec.output.uri:
        spec = spec.model_copy(
            update={"output": spec.output.model_copy(update={"uri": f"{spec.output.uri.rstrip('/')}/{name}"})}
        )
    return {
        "apiVersion": naming.API_VERSION_STRING,
        "kind": "TrainingRun",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": trial_labels(job, number),
            "annotations": {naming.STUDY: study, naming.TRIAL_NUMBER: str(number)},
        },
        "spec": spec.to_dict(),
    }
