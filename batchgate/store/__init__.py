"""The database: the single source of truth for files, batches, items and attempts."""
