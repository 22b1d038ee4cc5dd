"""Cancel and expire: stop new calls, let in-flight ones finish, end the rest with a line each."""

from __future__ import annotations

import json
import time

from sqlalchemy.engine import Connection, Engine

from batchgate.filestore import FileStore
from batchgate.pipeline.finalize import try_finalize
from batchgate.store.ingest import conclude_in, has_items
from batchgate.store.stopping import end_queued, start_cancelling

CANCELLED = {
    "code": "batch_cancelled",
    "message": "the batch was cancelled before this request ran",
}
EXPIRED = {
    "code": "batch_expired",
    "message": "this request could not be executed before the completion window expired",
}
CANCELLED_ERROR = json.dumps(CANCELLED)
EXPIRED_ERROR = json.dumps(EXPIRED)


def cancel(engine: Engine, files: FileStore, batch_id: str) -> bool:
    """Move a running batch to `cancelling`; returns False if it was not cancellable."""
    now = int(time.time())
    with engine.begin() as conn:
        moved = start_cancelling(conn, batch_id, now)
        if moved is None:
            return False
        if moved.in_progress_at is None and moved.ingest_lease_until is not None:
            # Cancelled mid-ingest: no ingest can store more items now (each group checks the
            # status first). With none stored yet the ingest is over; otherwise it removes
            # them (or the reconciler does, if it died) and then finalizes.
            if not has_items(conn, batch_id):
                conclude_in(conn, batch_id)
            else:
                return True
        else:
            _cancel_queued(conn, batch_id)
    try_finalize(engine, files, batch_id)
    return True


def cancel_queued_items(engine: Engine, batch_id: str) -> int:
    """End the queued items of a `cancelling` batch: items that went back to the queue after the
    cancel (a dead worker's released lease, a re-route) would otherwise wait forever."""
    with engine.begin() as conn:
        return _cancel_queued(conn, batch_id)


def expire_items(engine: Engine, batch_id: str) -> int:
    """End the queued items of a batch past its window; running ones finish or expire later."""
    with engine.begin() as conn:
        return end_queued(conn, batch_id, "expired", EXPIRED_ERROR)


def stop_for_budget(engine: Engine, batch_id: str, error: dict[str, str]) -> int:
    """End every not-yet-started item of a batch whose budget is spent: one error line each."""
    with engine.begin() as conn:
        return end_queued(conn, batch_id, "failed", json.dumps(error))


def _cancel_queued(conn: Connection, batch_id: str) -> int:
    return end_queued(conn, batch_id, "cancelled", CANCELLED_ERROR)
