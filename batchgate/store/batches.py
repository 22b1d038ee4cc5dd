"""Whole-batch queries: creating a batch and reading its status, its items in input order
(streamed), where a stored file lives, deleting a batch, the batch rows the vendor batch lane,
the reconciler and the workers' calls read, and the finalize lease (claiming a batch to
finalize, renewing the claim, ending the batch under it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from batchgate.store.db import reading
from batchgate.store.ingest import open_ingest
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


def batch_for_lane(engine: Engine, batch_id: str) -> Any:
    """What the vendor batch lane needs of a batch: id, status, expires_at, validate_output,
    price_table_json (None: no such batch)."""
    with reading(engine) as conn:
        return conn.execute(
            select(
                BATCH.c.id,
                BATCH.c.status,
                BATCH.c.expires_at,
                BATCH.c.validate_output,
                BATCH.c.price_table_json,
            ).where(BATCH.c.id == batch_id)
        ).first()


def batches_to_settle(engine: Engine) -> list[Any]:
    """(id, status, expires_at, finalizing_at) of the batches in progress, cancelling or
    finalizing whose ingest is over: those the reconciler may expire, cancel or finalize. One
    cancelled mid-ingest is left out: its ingest removes the items first."""
    with reading(engine) as conn:
        return list(
            conn.execute(
                select(BATCH.c.id, BATCH.c.status, BATCH.c.expires_at, BATCH.c.finalizing_at).where(
                    BATCH.c.status.in_(("in_progress", "cancelling", "finalizing")),
                    ~open_ingest(),
                )
            ).all()
        )


def batch_for_calls(engine: Engine, batch_id: str) -> tuple[Any, ...] | None:
    """What a worker needs of a batch to make its calls: endpoint, status, pinned price table
    (JSON), expiry, budget (USD text), whether answers are validated, tenant, whether it caches."""
    with reading(engine) as conn:
        row = conn.execute(
            select(
                BATCH.c.endpoint,
                BATCH.c.status,
                BATCH.c.price_table_json,
                BATCH.c.expires_at,
                BATCH.c.max_cost_usd,
                BATCH.c.validate_output,
                BATCH.c.tenant,
                BATCH.c.cache,
            ).where(BATCH.c.id == batch_id)
        ).first()
    return tuple(row) if row else None


def batch_row(engine: Engine, batch_id: str) -> Any:
    """The batch's row (every column); NoResultFound if there is none."""
    with reading(engine) as conn:
        return conn.execute(select(BATCH).where(BATCH.c.id == batch_id)).one()


# The finalize lease is the batch's `finalizing_at`: set when a finalizer wins the batch, moved
# on while it writes, and matched by its last write, so a finalizer presumed dead and taken over
# can no longer end the batch.
def _leased(batch_id: str, lease: int) -> Any:
    return (
        (BATCH.c.id == batch_id)
        & (BATCH.c.status == "finalizing")
        & (BATCH.c.finalizing_at == lease)
    )


def claim_finalize(engine: Engine, batch_id: str, now: int, stale_before: int | None) -> bool:
    """Move a running or cancelling batch to `finalizing` with lease `now`; with `stale_before`,
    also take it from a finalizer whose lease was last renewed before that. True if won."""
    # A batch cancelled mid-ingest waits for its partial items to be removed (store/ingest.py).
    claimable = BATCH.c.status.in_(["in_progress", "cancelling"]) & ~open_ingest()
    if stale_before is not None:
        claimable = claimable | (
            (BATCH.c.status == "finalizing") & (BATCH.c.finalizing_at < stale_before)
        )
    with engine.begin() as conn:
        return bool(
            conn.execute(
                update(BATCH)
                .where(BATCH.c.id == batch_id, claimable)
                .values(status="finalizing", finalizing_at=now)
            ).rowcount
        )


def renew_finalize(engine: Engine, batch_id: str, lease: int, new: int) -> bool:
    """Move the finalize lease from `lease` to `new`; False if it is no longer `lease`."""
    with engine.begin() as conn:
        return bool(
            conn.execute(
                update(BATCH).where(_leased(batch_id, lease)).values(finalizing_at=new)
            ).rowcount
        )


def end_finalized(
    engine: Engine, batch_id: str, lease: int, values: dict[str, Any], files: list[dict[str, Any]]
) -> bool:
    """End a batch (its status, result files, counts, summary: `values`) and register its result
    `files` in one transaction, if the finalize lease is still `lease`. False, and nothing
    written, if another finalizer took the batch over."""
    with engine.begin() as conn:
        ended = update(BATCH).where(_leased(batch_id, lease)).values(**values)
        if not conn.execute(ended).rowcount:
            return False  # the update matched nothing: the transaction wrote nothing
        conn.execute(FILE.insert(), files)
    return True


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
