"""The attempt ledger by lane (online, vendor_batch): spend, lines served, and the vendor batch
lane's usage for pricing it at online rates."""

from __future__ import annotations

from sqlalchemy import Row, func, select
from sqlalchemy.engine import Connection

from batchgate.store.items import ATTEMPT, BATCH, ITEM


def spend_by_lane(conn: Connection, batch_id: str) -> dict[str, tuple[int, int]]:
    """lane → (picodollars spent, calls made), lost calls left out."""
    return {
        lane: (int(pusd), int(calls))
        for lane, pusd, calls in conn.execute(
            select(ATTEMPT.c.lane, func.coalesce(func.sum(ATTEMPT.c.cost_pusd), 0), func.count())
            .where(ATTEMPT.c.batch_id == batch_id, ATTEMPT.c.status != "lost")
            .group_by(ATTEMPT.c.lane)
        ).all()
    }


def succeeded_lines(conn: Connection, batch_id: str) -> int:
    return int(
        conn.execute(
            select(func.count()).where(ITEM.c.batch_id == batch_id, ITEM.c.state == "succeeded")
        ).scalar_one()
    )


def vendor_served_lines(conn: Connection, batch_id: str) -> int:
    """Lines the vendor batch served: each has its one paid `ok` attempt there."""
    return int(
        conn.execute(
            select(func.count()).where(
                ATTEMPT.c.batch_id == batch_id,
                ATTEMPT.c.lane == "vendor_batch",
                ATTEMPT.c.status == "ok",
                ATTEMPT.c.duplicate.is_(False),
            )
        ).scalar_one()
    )


def vendor_lane_usage(conn: Connection, batch_id: str) -> list[Row]:
    """(deployment_id, input, output, cache read, cache write tokens, cost_pusd) of every vendor
    batch lane attempt."""
    return list(
        conn.execute(
            select(
                ATTEMPT.c.deployment_id,
                ATTEMPT.c.input_tokens,
                ATTEMPT.c.output_tokens,
                ATTEMPT.c.cache_read_tokens,
                ATTEMPT.c.cache_write_tokens,
                ATTEMPT.c.cost_pusd,
            ).where(ATTEMPT.c.batch_id == batch_id, ATTEMPT.c.lane == "vendor_batch")
        ).all()
    )


def price_table_json(conn: Connection, batch_id: str) -> str | None:
    """The batch's pinned price table, as stored."""
    return conn.execute(
        select(BATCH.c.price_table_json).where(BATCH.c.id == batch_id)
    ).scalar_one_or_none()
