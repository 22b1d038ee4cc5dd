"""Queries of the vendor batch lane: jobs (intent → submitted → ended → ingested) and the items
waiting on them (state `vendor`)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction

from batchgate.store.db import reading
from batchgate.store.items import BATCH, ITEM, Applied, AttemptRow, ItemUpdate, apply_in
from batchgate.store.models import VendorJob

JOB = VendorJob.__table__  # type: ignore[attr-defined]
LIVE = ("intent", "submitted", "cancelling", "ended")  # not yet fully on the books
IN_FLIGHT = ("intent", "submitted", "cancelling")  # counted against a vendor's cap


class octet_length(GenericFunction):
    """A text's size in bytes, as a vendor counts a job file (`length` counts characters)."""

    type = Integer()
    inherit_cache = True


@compiles(octet_length, "sqlite")
def _octet_length_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return f"length(CAST({compiler.process(element.clauses, **kw)} AS BLOB))"


@dataclass(frozen=True, slots=True)
class Waiting:
    """Lines of one batch and model waiting for a vendor job, none assigned yet."""

    batch_id: str
    alias: str
    vendor: str
    endpoint: str
    count: int


@dataclass(slots=True)
class JobItem:
    id: int
    batch_id: str
    custom_id: str
    body: dict[str, Any]
    alias: str
    vendor: str
    attempts: int
    model_attempts: int
    tried: list[str]
    chain: list[str]
    chain_pos: int


def waiting(engine: Engine) -> list[Waiting]:
    with reading(engine) as conn:
        rows = conn.execute(
            select(ITEM.c.batch_id, ITEM.c.alias, ITEM.c.vendor, BATCH.c.endpoint, func.count())
            .join(BATCH, BATCH.c.id == ITEM.c.batch_id)
            .where(
                ITEM.c.state == "vendor",
                ITEM.c.vendor_job_id.is_(None),
                BATCH.c.status == "in_progress",
            )
            .group_by(ITEM.c.batch_id, ITEM.c.alias, ITEM.c.vendor, BATCH.c.endpoint)
            .order_by(ITEM.c.batch_id)
        ).all()
    return [Waiting(*r) for r in rows]


def waiting_ids(engine: Engine, w: Waiting, limit: int) -> list[tuple[int, int]]:
    """(id, body bytes) of the first `limit` unassigned lines of a group, in input order."""
    with reading(engine) as conn:
        rows = conn.execute(
            select(ITEM.c.id, octet_length(ITEM.c.body))
            .where(
                ITEM.c.batch_id == w.batch_id,
                ITEM.c.alias == w.alias,
                ITEM.c.vendor == w.vendor,
                ITEM.c.state == "vendor",
                ITEM.c.vendor_job_id.is_(None),
            )
            .order_by(ITEM.c.idx)
            .limit(limit)
        ).all()
    return [(r[0], int(r[1])) for r in rows]


def create_intent(engine: Engine, job: dict[str, Any], ids: Sequence[int]) -> int:
    """Record the job (status `intent`) and assign its lines, in one transaction. Returns how
    many lines it holds (0: another lane took them first; nothing is recorded)."""
    with engine.begin() as conn:
        n = conn.execute(
            update(ITEM)
            .where(
                ITEM.c.id.in_(list(ids)),
                ITEM.c.state == "vendor",
                ITEM.c.vendor_job_id.is_(None),
            )
            .values(vendor_job_id=job["id"])
        ).rowcount
        if n != len(ids):
            conn.rollback()
            return 0
        conn.execute(insert(JOB).values(**{**job, "lines": n}))
    return n


def update_job(engine: Engine, job_id: str, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(JOB).where(JOB.c.id == job_id).values(**values))


def jobs(engine: Engine, statuses: Sequence[str], due_before: float | None = None) -> list[Any]:
    q = select(JOB).where(JOB.c.status.in_(list(statuses)))
    if due_before is not None:
        q = q.where(JOB.c.next_poll_at <= due_before)
    with reading(engine) as conn:
        return list(conn.execute(q.order_by(JOB.c.created_at)).all())


def in_flight(engine: Engine, vendor: str) -> int:
    with reading(engine) as conn:
        return int(
            conn.execute(
                select(func.count()).where(JOB.c.vendor == vendor, JOB.c.status.in_(IN_FLIGHT))
            ).scalar_one()
        )


def known_vendor_ids(engine: Engine, vendor: str) -> set[str]:
    with reading(engine) as conn:
        return set(
            conn.execute(
                select(JOB.c.vendor_id).where(JOB.c.vendor == vendor, JOB.c.vendor_id.is_not(None))
            ).scalars()
        )


def job_items(engine: Engine, job_id: str, waiting_only: bool = True) -> list[JobItem]:
    q = select(
        ITEM.c.id,
        ITEM.c.batch_id,
        ITEM.c.custom_id,
        ITEM.c.body,
        ITEM.c.alias,
        ITEM.c.vendor,
        ITEM.c.attempts,
        ITEM.c.model_attempts,
        ITEM.c.tried_json,
        ITEM.c.chain_json,
        ITEM.c.chain_pos,
    ).where(ITEM.c.vendor_job_id == job_id)
    if waiting_only:
        q = q.where(ITEM.c.state == "vendor")
    with reading(engine) as conn:
        rows = conn.execute(q.order_by(ITEM.c.idx)).all()
    return [
        JobItem(
            r.id,
            r.batch_id,
            r.custom_id,
            json.loads(r.body),
            r.alias,
            r.vendor,
            r.attempts,
            r.model_attempts,
            json.loads(r.tried_json),
            json.loads(r.chain_json),
            r.chain_pos,
        )
        for r in rows
    ]


def apply_results(
    engine: Engine,
    job_id: str,
    owner: str,
    updates: Sequence[ItemUpdate],
    attempts: Sequence[AttemptRow],
) -> Applied:
    """Write a group of a job's results through the recorder's path (`apply_in`: finish order,
    spend, attempts), in one transaction: the lines still waiting on this job are leased to
    `owner` for the length of the transaction only, so a line already ended elsewhere (the
    batch cancelled or expired) is fenced off like a stale lease."""
    ids = sorted({u.id for u in updates} | {a.item_id for a in attempts})
    with engine.begin() as conn:
        conn.execute(
            update(ITEM)
            .where(
                ITEM.c.id.in_(ids),
                ITEM.c.state == "vendor",
                ITEM.c.vendor_job_id == job_id,
            )
            .values(state="running", lease_owner=owner, lease_until=time.time() + 60)
        )
        return apply_in(conn, owner, updates, attempts)


def release_to_online(engine: Engine, job_id: str) -> list[tuple[str, str, int]]:
    """Every line still waiting on this job goes online (queued, to be enqueued); returns
    (batch_id, vendor, id) of each."""
    with engine.begin() as conn:
        rows = conn.execute(
            update(ITEM)
            .where(ITEM.c.vendor_job_id == job_id, ITEM.c.state == "vendor")
            .values(state="queued", enqueued_at=None, not_before=None)
            .returning(ITEM.c.batch_id, ITEM.c.vendor, ITEM.c.id)
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def release_ids_to_online(engine: Engine, ids: Sequence[int]) -> list[tuple[str, str, int]]:
    """Lines waiting unassigned that no job can take (no deployment with a batch API)."""
    if not ids:
        return []
    with engine.begin() as conn:
        rows = conn.execute(
            update(ITEM)
            .where(ITEM.c.id.in_(list(ids)), ITEM.c.state == "vendor")
            .values(state="queued", enqueued_at=None, not_before=None)
            .returning(ITEM.c.batch_id, ITEM.c.vendor, ITEM.c.id)
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def batch_jobs(conn: Any, batch_id: str) -> list[dict[str, Any]]:
    """The batch object's view of its vendor jobs, with the lines each still holds."""
    waiting_by_job = dict(
        conn.execute(
            select(ITEM.c.vendor_job_id, func.count())
            .where(ITEM.c.batch_id == batch_id, ITEM.c.state == "vendor")
            .group_by(ITEM.c.vendor_job_id)
        ).all()
    )
    rows = conn.execute(select(JOB).where(JOB.c.batch_id == batch_id).order_by(JOB.c.created_at))
    return [
        {
            "id": r.id,
            "vendor": r.vendor,
            "deployment": r.deployment_id,
            "vendor_job_id": r.vendor_id,
            "status": r.status,
            "vendor_status": r.vendor_status,
            "lines": r.lines,
            "waiting": int(waiting_by_job.get(r.id, 0)),
            "ingested": r.ingested,
        }
        for r in rows
    ] + (
        [{"id": None, "status": "unassigned", "waiting": int(waiting_by_job[None])}]
        if waiting_by_job.get(None)
        else []
    )
