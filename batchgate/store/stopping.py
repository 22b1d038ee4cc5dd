"""Stopping a batch before its items ran: the move to `cancelling`, and ending its queued items
(cancelled, expired, or failed for budget) with one error line each, in the caller's
transaction."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection

from batchgate.store.finished import next_seq
from batchgate.store.items import BATCH, ITEM


def start_cancelling(conn: Connection, batch_id: str, now: int) -> Any:
    """Move a validating or running batch to `cancelling`: its (in_progress_at,
    ingest_lease_until) as they were, or None if it was in neither status."""
    return conn.execute(
        update(BATCH)
        .where(BATCH.c.id == batch_id, BATCH.c.status.in_(("validating", "in_progress")))
        .values(status="cancelling", cancelling_at=now)
        .returning(BATCH.c.in_progress_at, BATCH.c.ingest_lease_until)
    ).first()


def end_queued(conn: Connection, batch_id: str, state: str, error_json: str) -> int:
    """Every queued item of the batch (and every one waiting on a vendor job, whose late
    results are then fenced off) ends in `state` with one error line; running ones are left
    to their holders."""
    return conn.execute(
        update(ITEM)
        .where(ITEM.c.batch_id == batch_id, ITEM.c.state.in_(("queued", "vendor")))
        .values(
            state=state,
            error_json=error_json,
            finished_at=time.time(),
            finish_seq=next_seq(conn, batch_id),
        )
    ).rowcount
