"""TrainingRun: a spec becomes a trainer Job; the Job's result becomes the run's status."""
