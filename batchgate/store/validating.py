"""Batches stuck in `validating`: expired past their window, or their ingest taken over once
its owner's lease lapsed (`ingest_attempts` is the ingest's fencing token, see `store.ingest`)."""

from __future__ import annotations

from sqlalchemy import and_, or_, update
from sqlalchemy.engine import Engine

from batchgate.store.items import BATCH


def expire_validating(engine: Engine, now: float) -> int:
    """Batches still validating past their window end `expired` (they have no items)."""
    with engine.begin() as conn:
        return conn.execute(
            update(BATCH)
            .where(BATCH.c.status == "validating", BATCH.c.expires_at <= now)
            .values(status="expired", expired_at=int(now))
        ).rowcount


def take_over_lapsed(
    engine: Engine, now: float, lease_until: float, max_attempts: int, errors_json: str
) -> list[str]:
    """Claim the validating batches whose ingest lease lapsed (one claimer wins each), leased to
    `lease_until`; first fail, with `errors_json`, those started `max_attempts` times already."""
    lapsed = and_(
        BATCH.c.status == "validating",
        or_(BATCH.c.ingest_lease_until.is_(None), BATCH.c.ingest_lease_until < now),
    )
    with engine.begin() as conn:
        conn.execute(
            update(BATCH)
            .where(lapsed, BATCH.c.ingest_attempts >= max_attempts)
            .values(status="failed", failed_at=int(now), errors_json=errors_json)
        )
        return list(
            conn.execute(
                update(BATCH)
                .where(lapsed)
                .values(
                    ingest_attempts=BATCH.c.ingest_attempts + 1,
                    ingest_lease_until=lease_until,
                )
                .returning(BATCH.c.id)
            ).scalars()
        )
