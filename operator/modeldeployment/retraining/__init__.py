"""spec.retraining of a ModelDeployment: start new TrainingRuns from a template when a trigger fires."""
