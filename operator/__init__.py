"""The Crucible operator (kopf): reconciles TrainingRuns and ModelDeployments. Imports no torch."""
