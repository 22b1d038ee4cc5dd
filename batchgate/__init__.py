"""batchgate: run large LLM batches across vendors with limits, fallbacks and exact cost."""

__version__ = "0.1.0"
