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
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from batchgate.filestore import FileStore
from batchgate.pipeline.finalize import try_finalize
from batchgate.pipeline.ingest import INGEST_LEASE_SECONDS, clear_abandoned
from batchgate.pipeline.lifecycle import cancel_queued_items, expire_items
from batchgate.store.batches import batches_to_settle
from batchgate.store.due import due_items, queued_vendors
from batchgate.store.enqueued import mark_enqueued
from batchgate.store.ingest import take_over_abandoned
from batchgate.store.leases import lease_owners, release_expired_leases
from batchgate.store.validating import expire_validating, take_over_lapsed

log = logging.getLogger(__name__)

FINALIZE_STALE_SECONDS = 120
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
    dead = watch.dead(lease_owners(engine), now)
    if not dead:
        return 0
    return release_expired_leases(engine, now, owners=dead)


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
        vendors = queued_vendors(engine)
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

    for batch_id, status, expires_at, finalizing_at in batches_to_settle(engine):
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


# What a batch whose ingest kept dying reports.
_FAILED = json.dumps(
    {
        "object": "list",
        "data": [
            {
                "code": "ingest_failed",
                "message": f"reading the input file failed {MAX_INGEST_ATTEMPTS} times",
                "line": None,
                "param": None,
            }
        ],
    }
)


def take_over_ingests(engine: Engine, now: float) -> list[str]:
    """Claim the validating batches whose ingest lease lapsed (one claimer wins each), and fail
    those whose ingest was started MAX_INGEST_ATTEMPTS times already."""
    return take_over_lapsed(engine, now, now + INGEST_LEASE_SECONDS, MAX_INGEST_ATTEMPTS, _FAILED)
