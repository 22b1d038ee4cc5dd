"""Whether the database answers, for `/healthz`."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine

from batchgate.store.db import reading


def ping(engine: Engine) -> None:
    """The cheapest round trip; raises what the driver raises when the database does not
    answer (the caller reports its class)."""
    with reading(engine) as conn:
        conn.execute(text("SELECT 1"))
