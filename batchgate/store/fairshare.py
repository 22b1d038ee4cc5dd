"""Which batch a vendor's next free slots go to: fair share across tenants, then batches.

A running chunk task refills from here as its items finish (`execution/runner.py`), so a new
batch does not wait behind every chunk message an earlier batch sent: the next refill of any
running task on that vendor already claims it. The order, read from the database each refill:

1. the tenant with the fewest items of this vendor in play (leased) goes first;
2. within a tenant, the batch with the highest `priority`, then the fewest items in play;
3. then the older batch.

Counting items in play (not calls made) keeps it simple and self-correcting: a tenant that got
much recently has more in play, so the next claims go to the others until they even out.
"""

from __future__ import annotations

from sqlalchemy import bindparam, exists, func, select
from sqlalchemy.engine import Engine

from batchgate.store.db import reading
from batchgate.store.items import BATCH, ITEM, ClaimedItem, claim_next

_WAITING = select(BATCH.c.id, BATCH.c.tenant, BATCH.c.priority, BATCH.c.created_at).where(
    BATCH.c.status == "in_progress",
    exists().where(
        ITEM.c.batch_id == BATCH.c.id,
        ITEM.c.vendor == bindparam("vendor"),
        ITEM.c.state == "queued",
        (ITEM.c.not_before.is_(None)) | (ITEM.c.not_before <= bindparam("now")),
    ),
)
_IN_PLAY = (
    select(ITEM.c.batch_id, func.count())
    .where(
        ITEM.c.batch_id.in_(bindparam("ids", expanding=True)),
        ITEM.c.vendor == bindparam("vendor"),
        ITEM.c.state == "running",
    )
    .group_by(ITEM.c.batch_id)
)


def fair_order(engine: Engine, vendor: str, now: float) -> list[str]:
    """Running batches with due queued items of `vendor`, the one to serve first first."""
    with reading(engine) as conn:
        waiting = conn.execute(_WAITING, {"vendor": vendor, "now": now}).all()
        if not waiting:
            return []
        ids = [b.id for b in waiting]
        in_play = dict(conn.execute(_IN_PLAY, {"ids": ids, "vendor": vendor}).all())
    per_tenant: dict[str, int] = {}
    for b in waiting:
        per_tenant[b.tenant] = per_tenant.get(b.tenant, 0) + in_play.get(b.id, 0)
    waiting.sort(
        key=lambda b: (per_tenant[b.tenant], -b.priority, in_play.get(b.id, 0), b.created_at)
    )
    return [b.id for b in waiting]


def claim_fair(
    engine: Engine, vendor: str, n: int, owner: str, now: float, lease: float
) -> list[ClaimedItem]:
    """Lease up to `n` queued, due items of `vendor` from the batch first in fair order (then
    the next ones, while it has fewer than `n` left)."""
    out: list[ClaimedItem] = []
    for batch_id in fair_order(engine, vendor, now) if n > 0 else []:
        out += claim_next(engine, batch_id, vendor, n - len(out), owner, now, lease)
        if len(out) >= n:
            break
    return out
