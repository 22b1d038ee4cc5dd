"""The queries behind a batch's summary: its ledger and its lines, each read in one pass grouped
by model (on a million-line batch every extra pass over a table costs about a second), and
rewriting a finished batch's summary."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.engine import Connection, Engine, Row

from batchgate.store.items import ATTEMPT, BATCH, ITEM

_PAID = ATTEMPT.c.status != "lost"
_DUPLICATE = ATTEMPT.c.duplicate.is_(True)
_SUCCEEDED = ITEM.c.state == "succeeded"
_CACHED = ITEM.c.cached.is_(True)


def _count(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _sum(condition: Any, column: Any) -> Any:
    return func.coalesce(func.sum(case((condition, column), else_=0)), 0)


_LEDGER = (
    select(
        ATTEMPT.c.alias,
        _count(_PAID),
        _sum(_PAID, ATTEMPT.c.input_tokens),
        _sum(_PAID, ATTEMPT.c.output_tokens),
        _sum(_PAID, ATTEMPT.c.cache_read_tokens),
        _sum(_PAID, ATTEMPT.c.cost_pusd),
        _count(_PAID & ATTEMPT.c.unpriced.is_(True)),
        _sum(_DUPLICATE, ATTEMPT.c.cost_pusd),
        _count(_DUPLICATE),
        _count(~_PAID),
        func.count(),
    )
    .where(ATTEMPT.c.batch_id == bindparam("batch_id"))
    .group_by(ATTEMPT.c.alias)
)
_LINES = (
    select(
        ITEM.c.alias,
        _count(_SUCCEEDED),
        _count(ITEM.c.error_json.like('%"budget_exceeded"%')),
        _count(_SUCCEEDED & (ITEM.c.chain_pos > 0)),
        _count(_CACHED),
        _sum(_CACHED, ITEM.c.cache_saved_pusd),
    )
    .where(ITEM.c.batch_id == bindparam("batch_id"))
    .group_by(ITEM.c.alias)
)
_ROWS = select(func.count()).where(ATTEMPT.c.batch_id == bindparam("batch_id"))


def ledger_by_model(conn: Connection, batch_id: str) -> list[Row]:
    """Per model: paid calls, input, output and cache-read tokens, cost and unpriced calls (paid
    rows only), then duplicate spend, duplicate calls, lost calls and all rows."""
    return list(conn.execute(_LEDGER, {"batch_id": batch_id}).all())


def lines_by_model(conn: Connection, batch_id: str) -> list[Row]:
    """Per model: succeeded lines, lines stopped by the budget, lines served by a fallback, lines
    served from the cache and what their calls would have cost (`store.cache.cache_savings`'s
    figures, counted in the same pass: each pass over a million items costs about a second)."""
    return list(conn.execute(_LINES, {"batch_id": batch_id}).all())


def attempt_rows(conn: Connection, batch_id: str) -> int:
    """How many attempt rows the batch's ledger holds."""
    return int(conn.execute(_ROWS, {"batch_id": batch_id}).scalar_one())


def rewrite_summary(engine: Engine, batch_id: str, summary_json: str) -> bool:
    """Replace the summary of a batch that has one (a finished batch). True if written."""
    with engine.begin() as conn:
        return bool(
            conn.execute(
                update(BATCH)
                .where(BATCH.c.id == batch_id, BATCH.c.summary_json.is_not(None))
                .values(summary_json=summary_json)
            ).rowcount
        )
