"""Hyperparameter search for TuningJobs, on Optuna's ask-and-tell interface.

The core is torch-free and shared by `crucible tune` and the operator:

- `space`: the search space as Optuna distributions; sampled values applied to the template.
- `algorithms`: the Optuna sampler and pruner a spec asks for.
- `outcome`: a trial's result (a TrainResult, a pruning, a crash) as the state told to the study.
- `budget`: when the search may start another trial and when it is over.
- `summary`: the status document (trial counts, best trial, study name).
- `study`: opening the durable study, the baseline trial, resuming trials left running.

`local` runs trials on this machine (it imports the trainer, so torch); `plots`, `display` and
`command` are the local runner's output and command line.
"""
