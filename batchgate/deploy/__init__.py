"""Deployment manifests derived from a config (Kubernetes)."""
