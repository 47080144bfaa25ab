"""ModelDeployment: serves a model that passed its gates, and rolls a better one out (rollout/)."""
