"""Crucible: train, evaluate, tune, deploy and promote models, with gates."""

__version__ = "0.1.0"

API_GROUP = "crucible.dev"
API_VERSION = "v1alpha1"
