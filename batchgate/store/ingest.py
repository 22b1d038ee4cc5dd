"""Ingest queries: items stored in committed groups under the ingest's lease, cleared again, or
moved with their batch to `in_progress`; the batch failed instead.

An ingest owns its batch through `ingest_attempts` (its fencing token: a takeover increments it)
and `ingest_lease_until` (renewed by every group). Each group is one short write transaction
that first checks the token (and, while storing, that the batch is still `validating`), so an
ingest that was taken over, cancelled or expired stops at its next group instead of writing
on. Items of a batch still `validating` are never run: every claim, enqueue and vendor-job
query selects `in_progress` batches only.

An ingest is *open* until its batch reaches `in_progress` (`in_progress_at` set) or the ingest
is concluded (`ingest_lease_until` cleared) after its partial items were removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    exists,
    false,
    insert,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection, Engine

from batchgate.store.items import BATCH, ITEM

# Rows per committed group: 5,000 took up to 0.7 s (SQLite) and 1.0 s (PostgreSQL) on a loaded
# 2-core machine, against the 1 s a write transaction may last; 2,000 keep a margin, and commits
# still cost little (benchmarks/RESULTS.md, "Ingest rate").
INGEST_GROUP = 2000
CLEAR_GROUP = 2000

# The columns an ingest fills, in the order of each row tuple.
ITEM_COLUMNS = ("batch_id", "idx", "custom_id", "body", "alias", "vendor", "chain_json", "state")
# What the insert binds: each row's id, assigned before the insert so that the ingest knows
# its items' ids without reading them back, then the row.
_INSERT_COLUMNS = ("id", *ITEM_COLUMNS)


def _constant(value: Any) -> Any:
    """A column default as SQL text: the insert goes to the driver, which applies no defaults."""
    if isinstance(value, bool):
        return true() if value else false()
    if isinstance(value, int):
        return literal_column(str(value))
    if isinstance(value, str):
        return literal_column("'" + value.replace("'", "''") + "'")
    raise TypeError(f"no SQL constant for {value!r}")


def _defaults() -> dict[str, Any]:
    """The item columns an ingest leaves at their (Python-side) default, with the value."""
    out = {}
    for col in ITEM.columns:
        default = col.default
        if col.name in ITEM_COLUMNS or col.primary_key or default is None:
            continue
        if default.is_scalar and default.arg is not None:
            out[col.name] = default.arg
    return out


_DEFAULTS = _defaults()
_INSERT = (
    insert(ITEM)
    .inline()
    .values(
        {
            **{c: bindparam(c) for c in _INSERT_COLUMNS},
            **{c: _constant(v) for c, v in _DEFAULTS.items()},
        }
    )
)
# PostgreSQL takes a group by COPY: a third of the client's CPU of an executemany, which sends
# one statement per row. COPY applies no Python-side defaults either: they go with every row.
_COPY = f"COPY item ({', '.join([*_INSERT_COLUMNS, *_DEFAULTS])}) FROM STDIN"
_COPY_TAIL = tuple(_DEFAULTS.values())
# PostgreSQL: ids from the item table's own sequence, so that inserts that take the default
# (none today) and ours never collide.
_PG_NEW_IDS = (
    "SELECT nextval(s) FROM (SELECT pg_get_serial_sequence('item', 'id') AS s) AS q, "
    "generate_series(1, %(n)s)"
)
_COMPILED: dict[str, str] = {}


def open_ingest() -> Any:
    """A batch whose ingest has not ended: not yet `in_progress`, not concluded."""
    return and_(BATCH.c.in_progress_at.is_(None), BATCH.c.ingest_lease_until.is_not(None))


def _owned(batch_id: str, attempt: int) -> Any:
    return and_(BATCH.c.id == batch_id, BATCH.c.ingest_attempts == attempt)


def hold_in(conn: Connection, batch_id: str, attempt: int, lease_until: float) -> bool:
    """Renew the lease of a storing ingest, in the caller's transaction; False once the batch is
    no longer ours to fill (taken over, cancelled, expired, deleted). Run first in a group's
    transaction: on PostgreSQL it locks the batch row, so a cancel waits at most one group."""
    moved = conn.execute(
        update(BATCH)
        .where(_owned(batch_id, attempt), BATCH.c.status == "validating")
        .values(ingest_lease_until=lease_until)
    )
    return moved.rowcount == 1


def hold(engine: Engine, batch_id: str, attempt: int, lease_until: float) -> bool:
    with engine.begin() as conn:
        return hold_in(conn, batch_id, attempt, lease_until)


def store_group(
    engine: Engine, batch_id: str, attempt: int, lease_until: float, rows: Sequence[tuple]
) -> Sequence[int] | None:
    """Insert one group of item rows (tuples in ITEM_COLUMNS order) in its own transaction;
    the ids given to the rows, in row order, or None, and nothing stored, once the batch is no
    longer ours to fill."""
    with engine.begin() as conn:
        if not hold_in(conn, batch_id, attempt, lease_until):
            return None
        return insert_rows(conn, rows)


def insert_rows(conn: Connection, rows: Sequence[tuple]) -> Sequence[int]:
    """Insert item rows (tuples in ITEM_COLUMNS order) with new ids, increasing in row order;
    returns the ids. On SQLite, in a transaction that already wrote (it holds the write lock,
    so no other insert takes the same ids)."""
    if not rows:
        return ()
    ids = _new_ids(conn, len(rows))
    if conn.dialect.name == "postgresql":
        raw = conn.connection.dbapi_connection
        assert raw is not None
        tail = _COPY_TAIL
        with raw.cursor() as cur, cur.copy(_COPY) as copy:
            for i, r in zip(ids, rows, strict=True):
                copy.write_row((i, *r, *tail))
    else:
        conn.exec_driver_sql(_insert_sql(conn), [(i, *r) for i, r in zip(ids, rows, strict=True)])
    return ids


def _insert_sql(conn: Connection) -> str:
    """The positional (qmark) insert, for one executemany at the driver: SQLAlchemy's per-row
    parameter handling cost more than SQLite's insert itself."""
    sql = _COMPILED.get(conn.dialect.name)
    if sql is None:
        stmt = _INSERT.compile(dialect=conn.dialect)
        # The binds come in _INSERT_COLUMNS order, so the tuples go as they are.
        assert tuple(stmt.positiontup or ()) == _INSERT_COLUMNS, stmt.positiontup
        sql = _COMPILED[conn.dialect.name] = str(stmt)
    return sql


def _new_ids(conn: Connection, n: int) -> Sequence[int]:
    """`n` unused item ids, increasing."""
    if conn.dialect.name == "sqlite":
        # What SQLite itself would give (the table has no AUTOINCREMENT): past the largest.
        top = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM item").scalar_one()
        return range(top + 1, top + 1 + n)
    if conn.dialect.name == "postgresql":
        return sorted(conn.exec_driver_sql(_PG_NEW_IDS, {"n": n}).scalars())
    raise NotImplementedError(f"item ids on {conn.dialect.name}")


def clear_group(engine: Engine, batch_id: str, attempt: int, lease_until: float) -> int | None:
    """Delete up to CLEAR_GROUP items of the batch of an open ingest, renewing its lease; how
    many (0: none left), or None when the ingest is not, or no longer, ours."""
    with engine.begin() as conn:
        moved = conn.execute(
            update(BATCH)
            .where(_owned(batch_id, attempt), open_ingest())
            .values(ingest_lease_until=lease_until)
        ).rowcount
        if moved != 1:
            return None
        ids = select(ITEM.c.id).where(ITEM.c.batch_id == batch_id).limit(CLEAR_GROUP)
        return conn.execute(delete(ITEM).where(ITEM.c.id.in_(ids.scalar_subquery()))).rowcount


def finish_ingest(
    engine: Engine,
    batch_id: str,
    attempt: int,
    lease_until: float,
    rows: Sequence[tuple],
    *,
    now: float,
    total: int,
    price_table_json: str,
) -> Sequence[int] | None:
    """Store the last group and move the batch to `in_progress`, in one transaction, or neither
    (None: the batch is no longer ours to fill); the ids given to the rows, in row order."""
    with engine.begin() as conn:
        if not hold_in(conn, batch_id, attempt, lease_until):
            return None
        ids = insert_rows(conn, rows)
        conn.execute(
            update(BATCH)
            .where(BATCH.c.id == batch_id)
            .values(
                status="in_progress",
                in_progress_at=int(now),
                total=total,
                price_table_json=price_table_json,
            )
        )
    return ids


# An ingest that stored this many lines has the item table's planner statistics refreshed
# at its end: on a just-filled table the claims were planned as on an empty one (5 lines/s for
# 37 s of a 1M-line batch, until an ANALYZE), and autovacuum looks only once a minute.
ANALYZE_AFTER = 10_000


def refresh_item_statistics(engine: Engine, stored: int) -> None:
    """After an ingest that stored `stored` lines: ANALYZE the item table if they were many
    (PostgreSQL only: the slow claims were seen there, not on SQLite). Skipped rather than
    waited for while another ANALYZE or VACUUM holds the table."""
    if stored < ANALYZE_AFTER or engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE (SKIP_LOCKED) item")


def fail_ingest(engine: Engine, batch_id: str, attempt: int, errors_json: str, now: float) -> bool:
    """End a `validating` batch whose items were cleared as `failed`, with these errors, and
    conclude its ingest (it left no items); False if the batch was no longer ours."""
    with engine.begin() as conn:
        moved = conn.execute(
            update(BATCH)
            .where(_owned(batch_id, attempt), BATCH.c.status == "validating")
            .values(
                status="failed",
                failed_at=int(now),
                errors_json=errors_json,
                ingest_lease_until=None,
            )
        ).rowcount
    return moved == 1


def has_items(conn: Connection, batch_id: str) -> bool:
    found = conn.execute(select(ITEM.c.id).where(ITEM.c.batch_id == batch_id).limit(1)).first()
    return found is not None


def conclude_in(conn: Connection, batch_id: str) -> None:
    """Conclude the open ingest of a batch that left `validating` with no items, whoever owns
    it: its owner's next write is refused, and it finds nothing left to remove."""
    conn.execute(
        update(BATCH)
        .where(BATCH.c.id == batch_id, open_ingest(), BATCH.c.status != "validating")
        .values(ingest_lease_until=None)
    )


def conclude(engine: Engine, batch_id: str, attempt: int) -> bool:
    """Mark the ingest of a batch that left `validating` (cancelled, expired, failed) as over,
    once its items are gone: from then on the batch may be finalized."""
    with engine.begin() as conn:
        moved = conn.execute(
            update(BATCH)
            .where(_owned(batch_id, attempt), open_ingest(), BATCH.c.status != "validating")
            .values(ingest_lease_until=None)
        ).rowcount
    return moved == 1


def take_over_abandoned(engine: Engine, now: float, lease_until: float) -> list[tuple[str, int]]:
    """Claim the open ingests of batches that left `validating` (cancelled, expired, failed)
    whose lease lapsed: (batch id, the new attempt that owns the clearing). Those with no items
    are concluded at once."""
    lapsed = and_(
        open_ingest(),
        BATCH.c.status.in_(("cancelling", "expired", "failed")),
        BATCH.c.ingest_lease_until < now,
    )
    empty = ~exists().where(ITEM.c.batch_id == BATCH.c.id)
    with engine.begin() as conn:
        conn.execute(
            update(BATCH)
            .where(lapsed, BATCH.c.status != "cancelling", empty)
            .values(ingest_lease_until=None)
        )
        rows = conn.execute(
            update(BATCH)
            .where(lapsed)
            .values(
                ingest_attempts=BATCH.c.ingest_attempts + 1,
                ingest_lease_until=lease_until,
            )
            .returning(BATCH.c.id, BATCH.c.ingest_attempts)
        ).all()
    return [(r.id, r.ingest_attempts) for r in rows]
