"""Spend by lane (online, vendor_batch) and what the vendor batch lane saved against the online
price of the same usage, both from the attempt ledger and the batch's pinned prices."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from batchgate.money import usd_str, usd_to_pusd
from batchgate.pricing import PriceTable, cost_of
from batchgate.providers.base import Usage
from batchgate.store.lanes import (
    price_table_json,
    spend_by_lane,
    succeeded_lines,
    vendor_lane_usage,
    vendor_served_lines,
)


def lane_summary(conn: Connection, batch_id: str) -> dict[str, Any]:
    spend = spend_by_lane(conn, batch_id)
    # A line the vendor batch served has its one paid `ok` attempt there; the rest ran online.
    served = vendor_served_lines(conn, batch_id)
    lines = {"online": succeeded_lines(conn, batch_id) - served, "vendor_batch": served}
    out: dict[str, Any] = {}
    for lane in ("online", "vendor_batch"):
        pusd, calls = spend.get(lane, (0, 0))
        out[lane] = {"lines": lines[lane], "calls": calls, "cost_usd": usd_str(pusd)}
    out["vendor_batch_saving_usd"] = usd_str(_saving_pusd(conn, batch_id))
    return out


def _saving_pusd(conn: Connection, batch_id: str) -> int:
    """Online price of the vendor batch lane's usage, minus what it cost."""
    table_json = price_table_json(conn, batch_id)
    rows = vendor_lane_usage(conn, batch_id)
    if not rows or not table_json:
        return 0
    table = PriceTable.from_json(json.loads(table_json))
    online = Decimal(0)
    paid = 0
    for dep_id, tin, tout, cr, cw, pusd in rows:
        online += cost_of(Usage(tin, tout, cr, cw), table.entry(dep_id))
        paid += int(pusd)
    return usd_to_pusd(online) - paid
