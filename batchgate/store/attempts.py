"""Queries on the attempt ledger that the output files need."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from batchgate.errors import ErrorKind
from batchgate.store.items import ATTEMPT


def reasks_by_item(conn: Connection, batch_id: str) -> dict[int, int]:
    """Item id → calls whose answer was not the JSON the line asked for (only items with any)."""
    rows = conn.execute(
        select(ATTEMPT.c.item_id, func.count())
        .where(
            ATTEMPT.c.batch_id == batch_id,
            ATTEMPT.c.error_kind == ErrorKind.invalid_output.value,
        )
        .group_by(ATTEMPT.c.item_id)
    )
    return {item_id: count for item_id, count in rows}
