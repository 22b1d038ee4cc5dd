"""A tenant's own batch, file or upload by id: the API's lookups, where tenants are kept apart.

Another tenant's row is not found, exactly like a missing one, so an id never tells a caller
that something exists outside its tenant.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Engine, Row

from batchgate.store.db import reading
from batchgate.store.models import Batch, File, Upload

BATCH: Table = Batch.__table__  # type: ignore[attr-defined]
FILE: Table = File.__table__  # type: ignore[attr-defined]
UPLOAD: Table = Upload.__table__  # type: ignore[attr-defined]


def _owned(engine: Engine, table: Table, tenant: str, ident: str) -> Row[Any] | None:
    with reading(engine) as conn:
        return conn.execute(
            select(table).where(table.c.id == ident, table.c.tenant == tenant)
        ).first()


def owned_batch(engine: Engine, tenant: str, batch_id: str) -> Row[Any] | None:
    return _owned(engine, BATCH, tenant, batch_id)


def owned_file(engine: Engine, tenant: str, file_id: str) -> Row[Any] | None:
    return _owned(engine, FILE, tenant, file_id)


def owned_upload(engine: Engine, tenant: str, upload_id: str) -> Row[Any] | None:
    return _owned(engine, UPLOAD, tenant, upload_id)
