"""The finish sequence: the order in which a batch's lines turned terminal, for live results.

Each transaction that ends items of a batch first bumps the batch's `finished_seq` counter and
stamps those items with the new value. The bump locks the batch row until commit, so sequence
values become visible in the order they were handed out: a reader that sees the counter at N
sees every item stamped ≤ N. A tail (`since` < seq ≤ head, head read first) therefore returns
each line exactly once, however many workers and hosts finish lines concurrently.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.engine import Connection

from batchgate.store.answers import LINE_COLUMNS
from batchgate.store.models import TERMINAL_ITEM_STATES, Batch, Item

ITEM = Item.__table__  # type: ignore[attr-defined]
BATCH = Batch.__table__  # type: ignore[attr-defined]


def next_seq(conn: Connection, batch_id: str) -> int:
    """Take the next finish sequence of a batch, inside the caller's write transaction."""
    return conn.execute(_BUMP, {"b_batch": batch_id}).scalar_one()


# Built once: building it on every flush cost more than running it.
_BUMP = (
    update(BATCH)
    .where(BATCH.c.id == bindparam("b_batch"))
    .values(finished_seq=BATCH.c.finished_seq + 1)
    .returning(BATCH.c.finished_seq)
)


def next_seqs(conn: Connection, batch_ids: Iterable[str]) -> dict[str, int]:
    """`next_seq` for several batches, in id order (one lock order for every writer)."""
    return {b: next_seq(conn, b) for b in sorted(set(batch_ids))}


@dataclass(frozen=True, slots=True)
class Head:
    status: str
    seq: int


def head(conn: Connection, batch_id: str) -> Head | None:
    """The batch's status and last committed finish sequence; read before `finished_since`."""
    row = conn.execute(
        select(BATCH.c.status, BATCH.c.finished_seq).where(BATCH.c.id == batch_id)
    ).first()
    return None if row is None else Head(row.status, int(row.finished_seq or 0))


def finished_since(conn: Connection, batch_id: str, since: int, upto: int) -> Iterator[Any]:
    """Item rows (`LINE_COLUMNS`) that turned terminal after `since`, up to `upto`, in finish
    order."""
    window = and_(ITEM.c.finish_seq > since, ITEM.c.finish_seq <= upto)
    if since == 0:
        # Lines finished before the sequence existed (an upgraded database) come first.
        window = or_(
            window, and_(ITEM.c.finish_seq.is_(None), ITEM.c.state.in_(TERMINAL_ITEM_STATES))
        )
    rows = conn.execution_options(yield_per=1000).execute(
        select(*LINE_COLUMNS)
        .where(ITEM.c.batch_id == batch_id, window)
        .order_by(ITEM.c.finish_seq, ITEM.c.idx)
    )
    yield from rows
