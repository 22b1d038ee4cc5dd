"""Lease queries the reconciler runs: who holds running items, and giving leases back.

A released item goes back to `queued` with no owner; its holder's late write is fenced off by
the owner check of `items.apply`.
"""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from batchgate.store.db import reading
from batchgate.store.items import ATTEMPT, ITEM


def lease_owners(engine: Engine) -> set[str]:
    """The owners (host:pid:chunk) of every running item's lease."""
    with reading(engine) as conn:
        owners = conn.execute(
            select(ITEM.c.lease_owner).where(ITEM.c.state == "running").distinct()
        ).scalars()
        return {o for o in owners if o}


def release_expired_leases(engine: Engine, now: float, owners: set[str] | None = None) -> int:
    """Release leases past their end (or, with `owners`, every lease those owners hold)."""
    which = ITEM.c.lease_until < now if owners is None else ITEM.c.lease_owner.in_(sorted(owners))
    with engine.begin() as conn:
        rows = conn.execute(
            update(ITEM)
            .where(ITEM.c.state == "running", which)
            .values(state="queued", lease_owner=None, lease_until=None, enqueued_at=None)
            .returning(ITEM.c.id, ITEM.c.batch_id, ITEM.c.alias, ITEM.c.vendor)
        ).all()
        if rows:
            # The holder died: it may have paid for a call we never saw. Count it, never hide it.
            conn.execute(
                insert(ATTEMPT),
                [
                    {
                        "item_id": r.id,
                        "batch_id": r.batch_id,
                        "alias": r.alias,
                        "deployment_id": "",
                        "vendor": r.vendor,
                        "started_at": now,
                        "finished_at": now,
                        "status": "lost",
                        "duplicate": True,
                    }
                    for r in rows
                ],
            )
    return len(rows)
