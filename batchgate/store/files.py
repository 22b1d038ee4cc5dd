"""File rows: storing an uploaded or written file, deleting one the API is asked to, and the
retention sweep's (which files have expired, and removing them)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.engine import Engine

from batchgate.store.db import reading
from batchgate.store.items import BATCH
from batchgate.store.models import File

FILE = File.__table__  # type: ignore[attr-defined]


def insert_file(engine: Engine, row: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(FILE.insert().values(**row))


def delete_unless_read(engine: Engine, file_id: str) -> bool:
    """Delete a file's row, unless a validating batch is reading the file (its ingest would be
    left with no input): then nothing changes and the answer is False."""
    being_read = exists().where(BATCH.c.input_file_id == file_id, BATCH.c.status == "validating")
    with engine.begin() as conn:
        if conn.execute(select(being_read)).scalar():
            return False
        conn.execute(FILE.delete().where(FILE.c.id == file_id))
    return True


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
