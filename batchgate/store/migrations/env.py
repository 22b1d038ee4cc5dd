"""Alembic's entry point. batchgate always hands it an open connection (see
`batchgate.store.migrate`), which already holds the migration lock."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from batchgate.store import models  # noqa: F401  (registers the tables)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `batchgate db upgrade`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,  # ALTERs on SQLite copy the table; harmless on PostgreSQL
    compare_type=True,
    # Migrations run inside the caller's transaction, which holds the lock.
    transaction_per_migration=False,
)
context.run_migrations()
