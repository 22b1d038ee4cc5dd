"""Response cache queries: look up many keys at once, write in groups, prune, stats, clear.

Every worker and host shares the table. Writes are upserts (two batches may answer the same
request at once; the newer answer wins), so they never fail on a key another worker wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from batchgate.store.db import executemany, reading
from batchgate.store.models import CachedResponse, Item

CACHE = CachedResponse.__table__  # type: ignore[attr-defined]
ITEM = Item.__table__  # type: ignore[attr-defined]


def _upsert(dialect: Any) -> Any:
    stmt = dialect.insert(CACHE).values({c.name: bindparam(c.name) for c in CACHE.columns})
    return stmt.on_conflict_do_update(
        index_elements=[CACHE.c.key],
        set_={
            "result_json": stmt.excluded.result_json,
            "bytes": stmt.excluded.bytes,
            "created_at": stmt.excluded.created_at,
        },
    )


_UPSERT = {"postgresql": _upsert(postgresql), "sqlite": _upsert(sqlite)}


@dataclass(frozen=True, slots=True)
class CacheRow:
    key: str
    tenant: str
    endpoint: str
    model: str
    result_json: str
    created_at: float


@dataclass(frozen=True, slots=True)
class TenantStats:
    tenant: str
    entries: int
    bytes: int
    expired: int
    oldest: float | None
    newest: float | None


_FIND = select(CACHE.c.key, CACHE.c.tenant, CACHE.c.result_json).where(
    CACHE.c.key.in_(bindparam("keys", expanding=True)), CACHE.c.created_at >= bindparam("since")
)


def find(engine: Engine, keys: Sequence[str], since: float) -> dict[str, tuple[str, str]]:
    """key -> (tenant, result JSON) for the keys stored at or after `since`: one query for
    a whole claim's worth of lines."""
    if not keys:
        return {}
    with reading(engine) as conn:
        rows = conn.execute(_FIND, {"keys": list(set(keys)), "since": since}).all()
    return {r.key: (r.tenant, r.result_json) for r in rows}


def put(conn: Connection, rows: Sequence[CacheRow]) -> None:
    """Store answers, in the caller's transaction (the recorder's flush: no commit of its own);
    a key already there takes the newer answer."""
    if not rows:
        return
    # One row per key: a statement may not upsert the same key twice (PostgreSQL refuses).
    latest = {r.key: r for r in sorted(rows, key=lambda r: r.created_at)}
    # In key order: two flushes upserting the same keys lock them in one order, never a cycle.
    latest = dict(sorted(latest.items()))
    values = [
        {
            "key": r.key,
            "tenant": r.tenant,
            "endpoint": r.endpoint,
            "model": r.model,
            "result_json": r.result_json,
            "bytes": len(r.result_json.encode("utf-8")),
            "created_at": r.created_at,
        }
        for r in latest.values()
    ]
    # Compiled once per dialect, run as the driver's executemany: compiling a multi-row
    # statement per flush cost several times more than running it (measured on PostgreSQL).
    executemany(conn, _UPSERT[conn.dialect.name], values)


def prune(engine: Engine, expired_before: float, max_entries: int) -> int:
    """Delete entries older than `expired_before`, then the oldest past `max_entries`; returns
    how many went. Both walk the `created_at` index, never the whole table."""
    with engine.begin() as conn:
        gone = conn.execute(delete(CACHE).where(CACHE.c.created_at < expired_before)).rowcount
        # The newest entry past the bound: it and everything older go.
        cutoff = conn.execute(
            select(CACHE.c.created_at)
            .order_by(CACHE.c.created_at.desc())
            .offset(max_entries)
            .limit(1)
        ).scalar()
        if cutoff is not None:
            gone += conn.execute(delete(CACHE).where(CACHE.c.created_at <= cutoff)).rowcount
    return int(gone)


def stats(engine: Engine, expired_before: float) -> list[TenantStats]:
    """Entries, bytes and ages per tenant (`expired`: past the TTL, not yet pruned)."""
    expired = func.sum(case((CACHE.c.created_at < expired_before, 1), else_=0))
    with reading(engine) as conn:
        rows = conn.execute(
            select(
                CACHE.c.tenant,
                func.count(),
                func.coalesce(func.sum(CACHE.c.bytes), 0),
                func.coalesce(expired, 0),
                func.min(CACHE.c.created_at),
                func.max(CACHE.c.created_at),
            )
            .group_by(CACHE.c.tenant)
            .order_by(CACHE.c.tenant)
        ).all()
    return [TenantStats(t, int(n), int(b), int(e), lo, hi) for t, n, b, e, lo, hi in rows]


def cache_savings(conn: Connection, batch_id: str) -> tuple[int, int]:
    """A batch's lines served from the cache, and what their calls would have cost (pUSD)."""
    n, saved = conn.execute(
        select(func.count(), func.coalesce(func.sum(ITEM.c.cache_saved_pusd), 0)).where(
            ITEM.c.batch_id == batch_id, ITEM.c.cached.is_(True)
        )
    ).one()
    return int(n), int(saved)


def clear(engine: Engine, tenant: str | None = None) -> int:
    """Delete every entry, or one tenant's; returns how many."""
    stmt = delete(CACHE)
    if tenant is not None:
        stmt = stmt.where(CACHE.c.tenant == tenant)
    with engine.begin() as conn:
        return int(conn.execute(stmt).rowcount)
