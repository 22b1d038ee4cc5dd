"""Spend by lane (online, vendor_batch) and what the vendor batch lane saved against the online
price of the same usage, both from the attempt ledger and the batch's pinned prices."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from batchgate.money import usd_str, usd_to_pusd
from batchgate.pricing import PriceTable, cost_of
from batchgate.providers.base import Usage
from batchgate.store.items import ATTEMPT, BATCH, ITEM


def lane_summary(conn: Connection, batch_id: str) -> dict[str, Any]:
    spend = {
        lane: (int(pusd), int(calls))
        for lane, pusd, calls in conn.execute(
            select(ATTEMPT.c.lane, func.coalesce(func.sum(ATTEMPT.c.cost_pusd), 0), func.count())
            .where(ATTEMPT.c.batch_id == batch_id, ATTEMPT.c.status != "lost")
            .group_by(ATTEMPT.c.lane)
        ).all()
    }
    # A line the vendor batch served has its one paid `ok` attempt there; the rest ran online.
    succeeded = conn.execute(
        select(func.count()).where(ITEM.c.batch_id == batch_id, ITEM.c.state == "succeeded")
    ).scalar_one()
    served = conn.execute(
        select(func.count()).where(
            ATTEMPT.c.batch_id == batch_id,
            ATTEMPT.c.lane == "vendor_batch",
            ATTEMPT.c.status == "ok",
            ATTEMPT.c.duplicate.is_(False),
        )
    ).scalar_one()
    lines = {"online": int(succeeded) - int(served), "vendor_batch": int(served)}
    out: dict[str, Any] = {}
    for lane in ("online", "vendor_batch"):
        pusd, calls = spend.get(lane, (0, 0))
        out[lane] = {"lines": lines[lane], "calls": calls, "cost_usd": usd_str(pusd)}
    out["vendor_batch_saving_usd"] = usd_str(_saving_pusd(conn, batch_id))
    return out


def _saving_pusd(conn: Connection, batch_id: str) -> int:
    """Online price of the vendor batch lane's usage, minus what it cost."""
    table_json = conn.execute(
        select(BATCH.c.price_table_json).where(BATCH.c.id == batch_id)
    ).scalar_one_or_none()
    rows = conn.execute(
        select(
            ATTEMPT.c.deployment_id,
            ATTEMPT.c.input_tokens,
            ATTEMPT.c.output_tokens,
            ATTEMPT.c.cache_read_tokens,
            ATTEMPT.c.cache_write_tokens,
            ATTEMPT.c.cost_pusd,
        ).where(ATTEMPT.c.batch_id == batch_id, ATTEMPT.c.lane == "vendor_batch")
    ).all()
    if not rows or not table_json:
        return 0
    table = PriceTable.from_json(json.loads(table_json))
    online = Decimal(0)
    paid = 0
    for dep_id, tin, tout, cr, cw, pusd in rows:
        online += cost_of(Usage(tin, tout, cr, cw), table.entry(dep_id))
        paid += int(pusd)
    return usd_to_pusd(online) - paid
