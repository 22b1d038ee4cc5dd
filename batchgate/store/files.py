"""File-row queries the retention sweep runs: which files have expired, and removing them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Engine

from batchgate.store.db import reading
from batchgate.store.items import BATCH
from batchgate.store.models import File

FILE = File.__table__  # type: ignore[attr-defined]


def expired_files(engine: Engine, now: float, limit: int) -> list[tuple[str, str]]:
    """(id, path) of up to `limit` files past their `expires_at`, except those a validating
    batch is reading right now (ingest would lose its input; the next sweep takes them)."""
    being_read = select(BATCH.c.input_file_id).where(BATCH.c.status == "validating")
    query = (
        select(FILE.c.id, FILE.c.path)
        .where(
            FILE.c.expires_at.is_not(None),
            FILE.c.expires_at <= now,
            FILE.c.id.not_in(being_read),
        )
        .limit(limit)
    )
    with reading(engine) as conn:
        return [(r.id, r.path) for r in conn.execute(query)]


def delete_file_rows(engine: Engine, ids: list[str]) -> None:
    with engine.begin() as conn:
        conn.execute(FILE.delete().where(FILE.c.id.in_(ids)))
