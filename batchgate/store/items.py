"""Hot-path item queries, in SQLAlchemy Core and in groups: claim, renew, apply outcomes.

Per-item ORM round trips cap a pipeline below ~1,000 items/s (research/performance.md), so
everything here works on a chunk of ids per statement or per transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import bindparam, func, insert, null, select, update
from sqlalchemy.engine import Connection, Engine

from batchgate.jsonl import loads_stored
from batchgate.store.answers import body_text, result_text
from batchgate.store.cache import CacheRow
from batchgate.store.cache import put as put_cached
from batchgate.store.db import executemany, reading
from batchgate.store.finished import next_seqs
from batchgate.store.models import (
    PENDING_ITEM_STATES,
    TERMINAL_ITEM_STATES,
    Attempt,
    Batch,
    Item,
)

ITEM = Item.__table__  # type: ignore[attr-defined]
ATTEMPT = Attempt.__table__  # type: ignore[attr-defined]
BATCH = Batch.__table__  # type: ignore[attr-defined]


@dataclass(slots=True)
class ClaimedItem:
    id: int
    batch_id: str
    idx: int
    custom_id: str
    body: dict[str, Any]
    alias: str
    vendor: str
    chain: list[str]
    chain_pos: int
    attempts: int
    model_attempts: int
    tried: list[str]


class Routed(Protocol):
    """An item as a worker or the vendor batch lane holds it: where its routing stands."""

    id: int
    alias: str
    vendor: str
    chain: list[str]
    chain_pos: int
    attempts: int
    model_attempts: int
    tried: list[str]


@dataclass(slots=True)
class ItemUpdate:
    """The new state of one leased item; applied only while we still hold its lease."""

    id: int
    state: str
    attempts: int
    model_attempts: int
    alias: str
    vendor: str
    chain_pos: int
    tried: list[str]
    chain: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    raw_body: str | None = None  # the result's body as the vendor sent it (`Completion.raw`)
    error: dict[str, Any] | None = None
    served_deployment: str | None = None
    not_before: float | None = None
    enqueued_at: float | None = None
    finished_at: float | None = None
    cached: bool = False  # served from the response cache (no call)
    saved_pusd: int = 0  # what that call would have cost

    @classmethod
    def of(cls, item: Routed, state: str, **kw: Any) -> ItemUpdate:
        """The update of a leased item, carrying its routing state as it stands now."""
        return cls(
            id=item.id,
            state=state,
            attempts=item.attempts,
            model_attempts=item.model_attempts,
            alias=item.alias,
            vendor=item.vendor,
            chain_pos=item.chain_pos,
            tried=item.tried,
            chain=item.chain,
            **kw,
        )


@dataclass(slots=True)
class AttemptRow:
    item_id: int
    batch_id: str
    alias: str
    deployment_id: str
    vendor: str
    started_at: float
    finished_at: float
    status: str
    provider_model: str | None = None
    error_kind: str | None = None
    status_code: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_pusd: int = 0
    unpriced: bool = False
    duplicate: bool = False
    lane: str = "online"


@dataclass(slots=True)
class Applied:
    stale: set[int] = field(default_factory=set)  # lease lost: outcome dropped, attempts duplicate


def claim(
    engine: Engine, ids: Sequence[int], owner: str, now: float, lease: float
) -> list[ClaimedItem]:
    """Lease the queued, due items among `ids` whose batch is running. Others are left alone:
    a redelivered message for a finished or leased item is a no-op."""
    if not ids:
        return []
    return _claim(engine, _CLAIM_IDS, {"ids": list(ids)}, owner, now, lease)


def claim_next(
    engine: Engine, batch_id: str, vendor: str, n: int, owner: str, now: float, lease: float
) -> list[ClaimedItem]:
    """Lease up to `n` more queued, due items of one batch and vendor, in input order: how a
    running task keeps the vendor busy instead of idling on its chunk's slowest items."""
    if n <= 0:
        return []
    stmt = _CLAIM_NEXT_PG if engine.dialect.name == "postgresql" else _CLAIM_NEXT
    params = {"b_batch": batch_id, "b_vendor": vendor, "n": n}
    return _claim(engine, stmt, params, owner, now, lease)


def _claim_statement(which: Any) -> Any:
    """UPDATE … RETURNING that leases the queued, due rows `which` selects, of running batches.
    Built once per shape at import: building statements per call cost more than running them."""
    running_batches = select(BATCH.c.id).where(BATCH.c.status == "in_progress")
    due = (ITEM.c.not_before.is_(None)) | (ITEM.c.not_before <= bindparam("now"))
    return (
        update(ITEM)
        .where(which, ITEM.c.state == "queued", due, ITEM.c.batch_id.in_(running_batches))
        .values(
            state="running",
            lease_owner=bindparam("b_owner"),
            lease_until=bindparam("b_lease_until"),
            claims=ITEM.c.claims + 1,
        )
        .returning(
            ITEM.c.id,
            ITEM.c.batch_id,
            ITEM.c.idx,
            ITEM.c.custom_id,
            ITEM.c.body,
            ITEM.c.alias,
            ITEM.c.vendor,
            ITEM.c.chain_json,
            ITEM.c.chain_pos,
            ITEM.c.attempts,
            ITEM.c.model_attempts,
            ITEM.c.tried_json,
        )
    )


_NEXT_IDS = (
    select(ITEM.c.id)
    .where(
        ITEM.c.batch_id == bindparam("b_batch"),
        ITEM.c.vendor == bindparam("b_vendor"),
        ITEM.c.state == "queued",
        (ITEM.c.not_before.is_(None)) | (ITEM.c.not_before <= bindparam("now")),
    )
    .order_by(ITEM.c.idx)
    .limit(bindparam("n"))
)
_CLAIM_IDS = _claim_statement(ITEM.c.id.in_(bindparam("ids", expanding=True)))
# SQLite serialises writers (BEGIN IMMEDIATE), so the plain subquery is exact there.
_CLAIM_NEXT = _claim_statement(ITEM.c.id.in_(_NEXT_IDS))
# PostgreSQL: two workers refilling from one batch would pick the same rows, and the loser would
# wait for the winner's commit, get nothing and stop refilling: skip rows another claim holds.
# Materialised, because a LIMIT … SKIP LOCKED subquery the planner re-runs per row returns the
# next rows each time and claims far more than `n`.
_PICKED = _NEXT_IDS.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
_CLAIM_NEXT_PG = _claim_statement(ITEM.c.id.in_(select(_PICKED.c.id)))


def _claim(
    engine: Engine, stmt: Any, params: dict[str, Any], owner: str, now: float, lease: float
) -> list[ClaimedItem]:
    params = {**params, "b_owner": owner, "now": now, "b_lease_until": now + lease}
    with engine.begin() as conn:
        rows = conn.execute(stmt, params).all()
    out = [
        ClaimedItem(
            id=r.id,
            batch_id=r.batch_id,
            idx=r.idx,
            custom_id=r.custom_id,
            body=loads_stored(r.body),
            alias=r.alias,
            vendor=r.vendor,
            chain=json.loads(r.chain_json),
            chain_pos=r.chain_pos,
            attempts=r.attempts,
            model_attempts=r.model_attempts,
            tried=json.loads(r.tried_json),
        )
        for r in rows
    ]
    out.sort(key=lambda c: (c.batch_id, c.idx))
    return out


def renew(engine: Engine, owner: str, ids: Sequence[int], lease_until: float) -> None:
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(
            update(ITEM)
            .where(ITEM.c.id.in_(list(ids)), ITEM.c.lease_owner == owner, ITEM.c.state == "running")
            .values(lease_until=lease_until)
        )


def apply(
    engine: Engine,
    owner: str,
    updates: Sequence[ItemUpdate],
    attempts: Sequence[AttemptRow],
    cached: Sequence[CacheRow] = (),
) -> Applied:
    """Record attempts and item outcomes in one transaction, fenced by the lease owner; with
    them, the answers a caching batch keeps for the response cache (a commit per flush costs
    more than the rows: the cache adds none)."""
    if not updates and not attempts:
        return Applied()
    with engine.begin() as conn:
        applied = apply_in(conn, owner, updates, attempts)
        put_cached(conn, cached)
        return applied


def apply_in(
    conn: Connection, owner: str, updates: Sequence[ItemUpdate], attempts: Sequence[AttemptRow]
) -> Applied:
    """`apply` inside the caller's transaction (the vendor batch lane leases and applies in one)."""
    result = Applied()
    ids = list({u.id for u in updates} | {a.item_id for a in attempts})
    if not ids:
        return result
    batch_of = {r.id: r.batch_id for r in conn.execute(_HELD, {"ids": ids, "b_owner": owner})}
    held = set(batch_of)
    result.stale = set(ids) - held
    if attempts:
        rows = []
        for a in attempts:
            row = {k: getattr(a, k) for k in AttemptRow.__slots__}
            row["duplicate"] = a.duplicate or a.item_id not in held
            rows.append(row)
        executemany(conn, _INSERT_ATTEMPT, rows)
    # Add this round's spend and tokens to the items we still hold.
    spend: dict[int, list[int]] = {}
    for a in attempts:
        if a.item_id in held:
            s = spend.setdefault(a.item_id, [0, 0, 0, 0, 0, 0])
            s[0] += a.cost_pusd
            s[1] += a.input_tokens
            s[2] += a.output_tokens
            s[3] += a.cache_read_tokens
            s[4] += a.cache_write_tokens
            s[5] |= int(a.unpriced)
    ending = [u for u in updates if u.id in held and u.state in TERMINAL_ITEM_STATES]
    seqs = next_seqs(conn, (batch_of[u.id] for u in ending))
    params = []
    for u in updates:
        if u.id not in held:
            continue
        s = spend.get(u.id, [0, 0, 0, 0, 0, 0])
        row = {f"b_{f}": getattr(u, f) for f in _PLAIN}
        row.update(
            b_id=u.id,
            b_owner=owner,
            b_tried_json=json.dumps(u.tried),
            b_chain_json=json.dumps(u.chain),
            b_result_json=result_text(u.result),
            b_response_body=u.raw_body if u.raw_body is not None else body_text(u.result),
            b_error_json=json.dumps(u.error) if u.error is not None else None,
            b_finish_seq=seqs[batch_of[u.id]] if u.state in TERMINAL_ITEM_STATES else None,
            b_cache_saved_pusd=u.saved_pusd,
            d_cost=s[0],
            d_in=s[1],
            d_out=s[2],
            d_cr=s[3],
            d_cw=s[4],
            d_unpriced=bool(s[5]),
        )
        params.append(row)
    if params:
        executemany(conn, _APPLY_UPDATE, params)
    return result


# Locked (PostgreSQL; SQLite's write lock does it there) until the outcome is written: a lease
# released in between would leave attempts counted as the item's while its outcome and spend
# are dropped by the fenced UPDATE. In id order, one lock order for every writer.
_HELD = (
    select(ITEM.c.id, ITEM.c.batch_id)
    .where(
        ITEM.c.id.in_(bindparam("ids", expanding=True)),
        ITEM.c.lease_owner == bindparam("b_owner"),
        ITEM.c.state == "running",
    )
    .order_by(ITEM.c.id)
    .with_for_update()
)
_INSERT_ATTEMPT = insert(ATTEMPT).values({k: bindparam(k) for k in AttemptRow.__slots__})
# The outcome's columns that `ItemUpdate` holds as they are stored (the same names); the rest are
# encoded (JSON, the answer's two columns) or derived (finish order, spend added to the item's).
_PLAIN = [f for f in ItemUpdate.__slots__ if f != "id" and f in ITEM.c]
_ENCODED = [
    "tried_json",
    "chain_json",
    "result_json",
    "response_body",
    "error_json",
    "finish_seq",
    "cache_saved_pusd",
]
_ADDED = {
    "cost_pusd": "d_cost",
    "input_tokens": "d_in",
    "output_tokens": "d_out",
    "cache_read_tokens": "d_cr",
    "cache_write_tokens": "d_cw",
}
_APPLY_UPDATE = (
    update(ITEM)
    .where(ITEM.c.id == bindparam("b_id"), ITEM.c.lease_owner == bindparam("b_owner"))
    .values(
        {
            **{c: bindparam(f"b_{c}") for c in [*_PLAIN, *_ENCODED]},
            **{c: ITEM.c[c] + bindparam(d) for c, d in _ADDED.items()},
            "unpriced": ITEM.c.unpriced | bindparam("d_unpriced"),
            "lease_owner": null(),
            "lease_until": null(),
        }
    )
)


def has_pending(engine: Engine, batch_id: str) -> bool:
    """Whether any item of the batch is still queued or running. Asked after every chunk, so it
    stops at the first row (a COUNT would walk a million-line batch each time)."""
    with reading(engine) as conn:
        return (
            conn.execute(
                select(ITEM.c.id)
                .where(ITEM.c.batch_id == batch_id, ITEM.c.state.in_(PENDING_ITEM_STATES))
                .limit(1)
            ).first()
            is not None
        )


def state_counts(conn: Connection, batch_id: str) -> dict[str, int]:
    rows = conn.execute(
        select(ITEM.c.state, func.count()).where(ITEM.c.batch_id == batch_id).group_by(ITEM.c.state)
    ).all()
    return {state: n for state, n in rows}
