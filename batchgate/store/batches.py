"""Whole-batch queries: a batch's items in input order (streamed), and deleting a batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from batchgate.store.db import reading
from batchgate.store.items import ATTEMPT, BATCH, ITEM
from batchgate.store.models import Batch, File

FILE = File.__table__  # type: ignore[attr-defined]


def items_in_order(engine: Engine, batch_id: str, page: int = 2000) -> Iterator[Any]:
    """Every item row of a batch by input index, fetched a page at a time (flat memory)."""
    with reading(engine) as conn:
        rows = conn.execution_options(yield_per=page).execute(
            select(ITEM).where(ITEM.c.batch_id == batch_id).order_by(ITEM.c.idx)
        )
        yield from rows


def file_path(engine: Engine, file_id: str) -> str | None:
    """Where a stored file lives, relative to the files directory."""
    with reading(engine) as conn:
        return conn.execute(select(FILE.c.path).where(FILE.c.id == file_id)).scalar()


def delete_batch(engine: Engine, batch_id: str, file_ids: list[str]) -> list[str]:
    """Remove a batch, its items and attempts, and the given file rows, in one transaction;
    returns the paths of the removed files (the caller unlinks them after the commit)."""
    with engine.begin() as conn:
        paths = [r.path for r in conn.execute(select(FILE.c.path).where(FILE.c.id.in_(file_ids)))]
        conn.execute(FILE.delete().where(FILE.c.id.in_(file_ids)))
        conn.execute(ATTEMPT.delete().where(ATTEMPT.c.batch_id == batch_id))
        conn.execute(ITEM.delete().where(ITEM.c.batch_id == batch_id))
        conn.execute(BATCH.delete().where(BATCH.c.id == batch_id))
    return paths


def insert_batch(engine: Engine, batch: Batch) -> None:
    """Store a new batch row, in its own transaction."""
    with engine.begin() as conn:
        conn.execute(BATCH.insert().values(**batch.model_dump()))


def batch_and_file(engine: Engine, batch_id: str) -> tuple[Any, Any]:
    """A batch's row and its input file's row; None for either that does not exist."""
    with reading(engine) as conn:
        batch = conn.execute(select(BATCH).where(BATCH.c.id == batch_id)).first()
        if batch is None:
            return None, None
        file = conn.execute(select(FILE).where(FILE.c.id == batch.input_file_id)).first()
    return batch, file


def batch_status(engine: Engine, batch_id: str) -> str | None:
    """A batch's status; None if there is no such batch."""
    with reading(engine) as conn:
        return conn.execute(select(BATCH.c.status).where(BATCH.c.id == batch_id)).scalar()
