"""What a batch goes through: ingest → (workers run items) → finalize; cancel; reconcile."""
