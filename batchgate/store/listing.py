"""The API's list pages: a tenant's batches or files in creation order, a page at a time.

Pages are keyset pages on (created_at, id): the cursor is the last row a client was shown, and
the next page holds the rows past it in the listing's order (ties on `created_at` broken by id).
Rows created meanwhile never shift a page, as an offset would.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, and_, or_, select
from sqlalchemy.engine import Connection, Engine, Row

from batchgate.store.db import reading
from batchgate.store.models import Batch, File

BATCH: Table = Batch.__table__  # type: ignore[attr-defined]
FILE: Table = File.__table__  # type: ignore[attr-defined]

Cursor = tuple[int, str]  # (created_at, id) of the row a page starts after


def _past(table: Table, cursor: Cursor, newest_first: bool) -> Any:
    created_at, ident = cursor
    if newest_first:
        return or_(
            table.c.created_at < created_at,
            and_(table.c.created_at == created_at, table.c.id < ident),
        )
    return or_(
        table.c.created_at > created_at,
        and_(table.c.created_at == created_at, table.c.id > ident),
    )


def _order(table: Table, newest_first: bool) -> list[Any]:
    keys = (table.c.created_at, table.c.id)
    return [k.desc() if newest_first else k.asc() for k in keys]


def batch_page(
    conn: Connection,
    tenant: str,
    limit: int,
    *,
    after: Cursor | None = None,
    newest_first: bool = True,
    id_prefix: str | None = None,
) -> list[Row[Any]]:
    """Up to `limit` of the tenant's batches past `after` (ask one more than you show to know
    whether more follow). On the caller's connection: it builds the batch objects from the same
    snapshot. `id_prefix` keeps one API's batches (Anthropic's `msgbatch_`)."""
    query = select(BATCH).where(BATCH.c.tenant == tenant)
    if id_prefix is not None:
        query = query.where(BATCH.c.id.like(id_prefix + "%"))
    if after is not None:
        query = query.where(_past(BATCH, after, newest_first))
    query = query.order_by(*_order(BATCH, newest_first)).limit(limit)
    return list(conn.execute(query).all())


def file_page(
    engine: Engine,
    tenant: str,
    limit: int,
    *,
    purpose: str | None = None,
    after: Cursor | None = None,
    newest_first: bool = True,
) -> list[Row[Any]]:
    """Up to `limit` of the tenant's files (of one `purpose`, if given) past `after`."""
    query = select(FILE).where(FILE.c.tenant == tenant)
    if purpose:
        query = query.where(FILE.c.purpose == purpose)
    if after is not None:
        query = query.where(_past(FILE, after, newest_first))
    query = query.order_by(*_order(FILE, newest_first)).limit(limit)
    with reading(engine) as conn:
        return list(conn.execute(query).all())
