"""Typed models of the custom resources' specs: the one source of truth for validation and CRDs."""
