"""The reconciler: the database is the truth, the broker only a doorbell.

Periodically: release expired leases, and at once the leases of a worker process known dead (its
liveness key gone from Redis for a few seconds), recording the possibly-made call as `lost`;
a late write from that process is fenced off by the lease owner check. Enqueue items
that are due but have no message (deferred retries, lost messages, a Redis restart without
persistence), take over ingests whose owner's lease lapsed (at most MAX_INGEST_ATTEMPTS in all,
then the batch fails), expire batches past their window (validating ones too), and finalize
batches whose items are all done.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Engine

from batchgate.filestore import FileStore
from batchgate.pipeline.finalize import try_finalize
from batchgate.pipeline.ingest import INGEST_LEASE_SECONDS, clear_abandoned
from batchgate.pipeline.lifecycle import cancel_queued_items, expire_items
from batchgate.store.db import reading
from batchgate.store.ingest import mark_enqueued, open_ingest, take_over_abandoned
from batchgate.store.items import ATTEMPT, BATCH, ITEM

log = logging.getLogger(__name__)

FINALIZE_STALE_SECONDS = 120
ENQUEUE_LIMIT = 100_000
MAX_INGEST_ATTEMPTS = 3
SWEEP_INTERVAL_SECONDS = 300.0  # partial uploads are swept this often, not every round


@dataclass
class ReconcileReport:
    released: int = 0
    enqueued: int = 0
    expired: int = 0
    finalized: int = 0
    reingested: int = 0
    swept: int = 0


# A worker whose liveness key has been missing this long (across rounds) is dead.
DEAD_AFTER_SECONDS = 5.0


class DeathWatch:
    """Which lease owners' processes are dead: their liveness key missing for DEAD_AFTER_SECONDS
    on consecutive looks (a broker restart loses every key; live workers set theirs again
    within a second, so they are not mistaken for dead)."""

    def __init__(
        self,
        alive: Callable[[list[str]], set[str] | None],
        on_dead: Callable[[set[str]], object] = lambda workers: None,
        holders: Callable[[], set[str]] = set,
    ) -> None:
        self._alive = alive  # worker ids → those whose key exists; None if Redis did not answer
        self._on_dead = on_dead  # e.g. take back the call slots they held
        # Workers holding call slots: watched even when they own no lease, so a worker whose
        # leases lapsed (and were released) before it was declared dead still gets its slots
        # taken back, instead of halving the vendor's limit until the slots' TTL.
        self._holders = holders
        self._missing: dict[str, float] = {}

    def dead(self, owners: set[str], now: float) -> set[str]:
        workers = {worker_of(o) for o in owners} | self._holders()
        alive = self._alive(sorted(workers)) if workers else set()
        if alive is None:
            return set()
        for w in list(self._missing):
            if w not in workers or w in alive:
                del self._missing[w]
        for w in workers - alive:
            self._missing.setdefault(w, now)
        gone = {w for w, since in self._missing.items() if now - since >= DEAD_AFTER_SECONDS}
        if gone:
            self._on_dead(gone)
        return {o for o in owners if worker_of(o) in gone}


def worker_of(owner: str) -> str:
    """The worker process id (host:pid) of a lease owner (host:pid:chunk)."""
    return owner.rsplit(":", 1)[0]


def release_dead_owners(engine: Engine, now: float, watch: DeathWatch) -> int:
    """Release, now, the leases held by worker processes known dead."""
    with reading(engine) as conn:
        owners = set(
            conn.execute(
                select(ITEM.c.lease_owner).where(ITEM.c.state == "running").distinct()
            ).scalars()
        )
    dead = watch.dead({o for o in owners if o}, now)
    if not dead:
        return 0
    return release_expired_leases(engine, now, owners=dead)


def release_expired_leases(engine: Engine, now: float, owners: set[str] | None = None) -> int:
    """Release leases past their end (or, with `owners`, every lease those owners hold)."""
    which = ITEM.c.lease_until < now if owners is None else ITEM.c.lease_owner.in_(sorted(owners))
    with engine.begin() as conn:
        rows = conn.execute(
            update(ITEM)
            .where(ITEM.c.state == "running", which)
            .values(state="queued", lease_owner=None, lease_until=None, enqueued_at=None)
            .returning(ITEM.c.id, ITEM.c.batch_id, ITEM.c.alias, ITEM.c.vendor)
        ).all()
        if rows:
            # The holder died: it may have paid for a call we never saw. Count it, never hide it.
            conn.execute(
                insert(ATTEMPT),
                [
                    {
                        "item_id": r.id,
                        "batch_id": r.batch_id,
                        "alias": r.alias,
                        "deployment_id": "",
                        "vendor": r.vendor,
                        "started_at": now,
                        "finished_at": now,
                        "status": "lost",
                        "duplicate": True,
                    }
                    for r in rows
                ],
            )
    return len(rows)


def due_items(
    engine: Engine, now: float, stale_before: float, idle_vendors: set[str]
) -> dict[tuple[str, str], list[int]]:
    """Queued items of running batches that need a message: never enqueued (or deferred and now
    due), or enqueued long ago on a vendor queue that is now empty (the message was lost)."""
    running = select(BATCH.c.id).where(BATCH.c.status == "in_progress", BATCH.c.expires_at > now)
    # Two index range scans on (state, enqueued_at) rather than one OR that walks every queued
    # row: a large backlog is queued and enqueued, and must cost nothing here.
    wanted = [ITEM.c.enqueued_at.is_(None)]
    if idle_vendors:
        wanted.append(
            and_(ITEM.c.enqueued_at < stale_before, ITEM.c.vendor.in_(sorted(idle_vendors)))
        )
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    with reading(engine) as conn:
        for condition in wanted:
            rows = conn.execute(
                select(ITEM.c.id, ITEM.c.batch_id, ITEM.c.vendor)
                .where(
                    ITEM.c.state == "queued",
                    condition,
                    or_(ITEM.c.not_before.is_(None), ITEM.c.not_before <= now),
                    ITEM.c.batch_id.in_(running),
                )
                .limit(ENQUEUE_LIMIT)
            ).all()
            for item_id, batch_id, vendor in rows:
                groups[(batch_id, vendor)].append(item_id)
    for ids in groups.values():
        ids.sort()  # ids follow input order within a batch
    return groups


def reconcile_once(
    engine: Engine,
    files: FileStore,
    enqueue: Callable[[str, str, list[int]], int],
    queue_length: Callable[[str], int],
    *,
    stale_enqueue_seconds: float,
    reingest: Callable[[str], object] | None = None,
    deaths: DeathWatch | None = None,
    vendors: Iterable[str] = (),
    now: float | None = None,
) -> ReconcileReport:
    now = time.time() if now is None else now
    report = ReconcileReport()
    report.released = release_expired_leases(engine, now)
    if deaths is not None:
        report.released += release_dead_owners(engine, now, deaths)

    if not vendors:
        with reading(engine) as conn:
            vendors = set(
                conn.execute(
                    select(ITEM.c.vendor).where(ITEM.c.state == "queued").distinct()
                ).scalars()
            )
    idle = {v for v in vendors if queue_length(v) == 0}
    for (batch_id, vendor), ids in due_items(
        engine, now, now - stale_enqueue_seconds, idle
    ).items():
        try:
            enqueue(batch_id, vendor, ids)
        except Exception:  # broker down: try again next round
            log.warning("reconciler: could not enqueue %d items of %s", len(ids), batch_id)
            continue
        mark_enqueued(engine, ids)
        report.enqueued += len(ids)

    report.expired += expire_validating(engine, now)
    if now - files.swept_at >= SWEEP_INTERVAL_SECONDS:
        report.swept = files.sweep_partial(now)
    if reingest is not None:
        # An API that died while ingesting leaves a batch `validating`, perhaps with some of its
        # items stored: once its lease lapses, run it again (it clears them first).
        for batch_id in take_over_ingests(engine, now):
            try:
                reingest(batch_id)
                report.reingested += 1
            except Exception:
                log.exception("reconciler: re-ingest of %s failed", batch_id)
    # One that died after its batch was cancelled, expired or failed left items to remove.
    for batch_id, attempt in take_over_abandoned(engine, now, now + INGEST_LEASE_SECONDS):
        try:
            clear_abandoned(engine, files, batch_id, attempt)
        except Exception:
            log.exception("reconciler: clearing the ingest of %s failed", batch_id)

    with reading(engine) as conn:
        active = conn.execute(
            select(BATCH.c.id, BATCH.c.status, BATCH.c.expires_at, BATCH.c.finalizing_at).where(
                BATCH.c.status.in_(("in_progress", "cancelling", "finalizing")),
                ~open_ingest(),  # cancelled mid-ingest: its ingest removes the items first
            )
        ).all()
    for batch_id, status, expires_at, finalizing_at in active:
        if status == "in_progress" and expires_at <= now:
            report.expired += expire_items(engine, batch_id)
        if status == "cancelling":
            cancel_queued_items(engine, batch_id)
        if status == "finalizing":
            # Its finalizer renews `finalizing_at` while it writes: stale means it died.
            stale = int(now - FINALIZE_STALE_SECONDS)
            if finalizing_at and finalizing_at < stale:
                report.finalized += try_finalize(engine, files, batch_id, stale_before=stale)
        elif try_finalize(engine, files, batch_id):
            report.finalized += 1
    return report


def expire_validating(engine: Engine, now: float) -> int:
    """Batches still validating past their window end `expired` (they have no items)."""
    with engine.begin() as conn:
        return conn.execute(
            update(BATCH)
            .where(BATCH.c.status == "validating", BATCH.c.expires_at <= now)
            .values(status="expired", expired_at=int(now))
        ).rowcount


def take_over_ingests(engine: Engine, now: float) -> list[str]:
    """Claim the validating batches whose ingest lease lapsed (one claimer wins each), and fail
    those whose ingest was started MAX_INGEST_ATTEMPTS times already."""
    lapsed = and_(
        BATCH.c.status == "validating",
        or_(BATCH.c.ingest_lease_until.is_(None), BATCH.c.ingest_lease_until < now),
    )
    with engine.begin() as conn:
        conn.execute(
            update(BATCH)
            .where(lapsed, BATCH.c.ingest_attempts >= MAX_INGEST_ATTEMPTS)
            .values(
                status="failed",
                failed_at=int(now),
                errors_json=json.dumps(
                    {
                        "object": "list",
                        "data": [
                            {
                                "code": "ingest_failed",
                                "message": f"reading the input file failed "
                                f"{MAX_INGEST_ATTEMPTS} times",
                                "line": None,
                                "param": None,
                            }
                        ],
                    }
                ),
            )
        )
        return list(
            conn.execute(
                update(BATCH)
                .where(lapsed)
                .values(
                    ingest_attempts=BATCH.c.ingest_attempts + 1,
                    ingest_lease_until=now + INGEST_LEASE_SECONDS,
                )
                .returning(BATCH.c.id)
            ).scalars()
        )
