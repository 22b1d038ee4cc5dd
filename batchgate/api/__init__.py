"""The HTTP API: OpenAI Batch API compatible files and batches, plus health."""
