"""A running batch's numbers, read from its items and attempts until finalize writes its summary:
spend and tokens so far, lines a fallback served, spend per model, and the budget's seed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection, Engine

from batchgate.store.db import reading
from batchgate.store.models import Attempt, Item

ITEM = Item.__table__  # type: ignore[attr-defined]
ATTEMPT = Attempt.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Spend:
    cost_pusd: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int


def spend(conn: Connection, batch_id: str) -> Spend:
    """What the batch's attempts have cost so far, and their tokens."""
    pusd, tin, tout, tcache = conn.execute(
        select(
            func.coalesce(func.sum(ATTEMPT.c.cost_pusd), 0),
            func.coalesce(func.sum(ATTEMPT.c.input_tokens), 0),
            func.coalesce(func.sum(ATTEMPT.c.output_tokens), 0),
            func.coalesce(func.sum(ATTEMPT.c.cache_read_tokens), 0),
        ).where(ATTEMPT.c.batch_id == batch_id)
    ).one()
    return Spend(int(pusd), int(tin), int(tout), int(tcache))


def fallback_lines(conn: Connection, batch_id: str) -> int:
    """Lines that moved past their first model (whatever their state)."""
    return int(
        conn.execute(
            select(func.count()).where(ITEM.c.batch_id == batch_id, ITEM.c.chain_pos > 0)
        ).scalar_one()
    )


def cost_by_model(conn: Connection, batch_id: str) -> dict[str, tuple[int, int, bool]]:
    """A running batch's spend so far per model alias: (calls, picodollars, any unpriced)."""
    rows = conn.execute(
        select(
            ATTEMPT.c.alias,
            func.count(),
            func.coalesce(func.sum(ATTEMPT.c.cost_pusd), 0),
            func.max(case((ATTEMPT.c.unpriced.is_(True), 1), else_=0)),
        )
        .where(ATTEMPT.c.batch_id == batch_id, ATTEMPT.c.status != "lost")
        .group_by(ATTEMPT.c.alias)
    ).all()
    return {alias: (int(n), int(pusd), bool(unp)) for alias, n, pusd, unp in rows}


def spent_pusd(engine: Engine, batch_id: str) -> int:
    """What the attempt ledger says a batch has spent (seeds a worker's budget counter)."""
    with reading(engine) as conn:
        return int(
            conn.execute(
                select(func.coalesce(func.sum(ATTEMPT.c.cost_pusd), 0)).where(
                    ATTEMPT.c.batch_id == batch_id
                )
            ).scalar_one()
        )
