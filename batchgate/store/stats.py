"""Totals over the whole store, for `/metrics`: every process's work, read from the truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection

from batchgate.store.models import TERMINAL_ITEM_STATES, Attempt, Batch, Item

ITEM = Item.__table__  # type: ignore[attr-defined]
ATTEMPT = Attempt.__table__  # type: ignore[attr-defined]
BATCH = Batch.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Calls:
    vendor: str
    model: str  # the alias the call was made for
    outcome: str  # ok | error | lost
    count: int
    cost_pusd: int


def calls(conn: Connection) -> list[Calls]:
    rows = conn.execute(
        select(
            ATTEMPT.c.vendor,
            ATTEMPT.c.alias,
            ATTEMPT.c.status,
            func.count(),
            func.coalesce(func.sum(ATTEMPT.c.cost_pusd), 0),
        ).group_by(ATTEMPT.c.vendor, ATTEMPT.c.alias, ATTEMPT.c.status)
    ).all()
    return [Calls(v, a, s, int(n), int(c)) for v, a, s, n, c in rows]


def lines_by_state(conn: Connection) -> dict[str, int]:
    rows = conn.execute(
        select(ITEM.c.state, func.count())
        .where(ITEM.c.state.in_(TERMINAL_ITEM_STATES))
        .group_by(ITEM.c.state)
    ).all()
    return {state: int(n) for state, n in rows}


def batches_by_status(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(BATCH.c.status, func.count()).group_by(BATCH.c.status)).all()
    return {status: int(n) for status, n in rows}


@dataclass(frozen=True, slots=True)
class Latency:
    vendor: str
    cumulative: list[int]  # calls that took ≤ each bound, in the order of the bounds
    count: int
    total_seconds: float


def call_latency(conn: Connection, bounds: Sequence[float]) -> list[Latency]:
    """Per vendor: how many finished calls took at most each bound (seconds), and their sum."""
    took = ATTEMPT.c.finished_at - ATTEMPT.c.started_at
    columns = [func.sum(case((took <= b, 1), else_=0)) for b in bounds]
    rows = conn.execute(
        select(ATTEMPT.c.vendor, func.count(), func.coalesce(func.sum(took), 0.0), *columns)
        .where(ATTEMPT.c.status != "lost", ATTEMPT.c.finished_at.is_not(None))
        .group_by(ATTEMPT.c.vendor)
    ).all()
    return [Latency(r[0], [int(x or 0) for x in r[3:]], int(r[1]), float(r[2])) for r in rows]
