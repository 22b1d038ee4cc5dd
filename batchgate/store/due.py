"""Queued items that need a message: what the reconciler enqueues when the broker lost one
(deferred retries coming due, lost messages, a Redis restart without persistence)."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Engine

from batchgate.store.db import reading
from batchgate.store.items import BATCH, ITEM

ENQUEUE_LIMIT = 100_000


def queued_vendors(engine: Engine) -> set[str]:
    """The vendors some queued item waits for."""
    with reading(engine) as conn:
        return set(
            conn.execute(select(ITEM.c.vendor).where(ITEM.c.state == "queued").distinct()).scalars()
        )


def due_items(
    engine: Engine, now: float, stale_before: float, idle_vendors: set[str]
) -> dict[tuple[str, str], list[int]]:
    """Queued items of running batches that need a message: never enqueued (or deferred and now
    due), or enqueued long ago on a vendor queue that is now empty (the message was lost)."""
    running = select(BATCH.c.id).where(BATCH.c.status == "in_progress", BATCH.c.expires_at > now)
    # Two index range scans on (state, enqueued_at) rather than one OR that walks every queued
    # row: a large backlog is queued and enqueued, and must cost nothing here.
    wanted = [ITEM.c.enqueued_at.is_(None)]
    if idle_vendors:
        wanted.append(
            and_(ITEM.c.enqueued_at < stale_before, ITEM.c.vendor.in_(sorted(idle_vendors)))
        )
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    with reading(engine) as conn:
        for condition in wanted:
            rows = conn.execute(
                select(ITEM.c.id, ITEM.c.batch_id, ITEM.c.vendor)
                .where(
                    ITEM.c.state == "queued",
                    condition,
                    or_(ITEM.c.not_before.is_(None), ITEM.c.not_before <= now),
                    ITEM.c.batch_id.in_(running),
                )
                .limit(ENQUEUE_LIMIT)
            ).all()
            for item_id, batch_id, vendor in rows:
                groups[(batch_id, vendor)].append(item_id)
    for ids in groups.values():
        ids.sort()  # ids follow input order within a batch
    return groups
