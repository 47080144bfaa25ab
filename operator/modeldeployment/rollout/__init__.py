"""A ModelDeployment's rollout of a candidate model: canary steps, analysis, promotion, status."""
