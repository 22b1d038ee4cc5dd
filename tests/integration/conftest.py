"""Fixtures of the chunk-level tests (`chunk_harness`): a simulator in a thread, a runtime."""

from tests.integration.chunk_harness import rt, sim  # noqa: F401  (pytest fixtures)
