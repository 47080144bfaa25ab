"""TuningJob: an Optuna study whose trials are child TrainingRuns."""
