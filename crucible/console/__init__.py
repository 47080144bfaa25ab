"""The console: read-only web pages for runs, gates, trials and canaries, against a cluster (through the
Kubernetes API) or a local `runs/` directory of `crucible train` and `crucible tune` outputs.

Both sources hand the pages the same shape: custom-resource-like dicts (`kind`, `metadata`, `spec`,
`status`), so every page reads a local run as it reads a TrainingRun on a cluster.
"""
