"""Running leased items inside a worker process: one event loop, one client per vendor."""
