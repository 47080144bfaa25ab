"""Pure builders: plans in, Kubernetes manifests (plain dicts) out. No API calls, no kopf."""
