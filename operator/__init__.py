"""The Crucible operator (kopf): reconciles TrainingRuns, TuningJobs and ModelDeployments, one package
per kind, with what they share in kube/. main.py registers the handlers. Imports no torch."""
