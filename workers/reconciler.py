"""The reconciler process: runs `batchgate.pipeline.reconcile` every few seconds. Run as many
replicas as you like (one per zone): they take turns through a leader lock in Redis, and a
replica takes over within a few seconds of the leader's death."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

import redis

from batchgate.config import Config
from batchgate.coordination import LeaderLock, connect
from batchgate.execution import faults
from batchgate.filestore import FileStore
from batchgate.names import alive_key
from batchgate.pipeline.ingest import ingest
from batchgate.pipeline.reconcile import DeathWatch, reconcile_once
from batchgate.pipeline.retention import (
    sweep_expired_files,
    sweep_expired_uploads,
    sweep_response_cache,
)
from batchgate.queueing import enqueue, queue_depths
from batchgate.routing.reclaim import free_slots_of, slot_holders
from batchgate.settings import Settings
from batchgate.store import migrate
from batchgate.store.db import make_engine
from batchgate.vendor_batch.context import Lane
from batchgate.vendor_batch.lane import run_round
from workers.celery import app

log = logging.getLogger(__name__)

# A leader that stops renewing is replaced after this long at least (3 rounds when slower).
LEADER_TTL_MIN_S = 5.0


def run_forever(settings: Settings, config: Config, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    faults.install_from_spec(settings.test_faults, settings.data_dir)
    engine = make_engine(
        settings.resolved_database_url(),
        idle_transaction_seconds=settings.db_idle_transaction_seconds,
    )
    migrate.upgrade(engine)
    files = FileStore(settings.files_dir)
    coordination = connect(settings.redis_url or "")
    lock = LeaderLock(
        coordination,
        "reconciler",
        ttl_s=max(LEADER_TTL_MIN_S, 3 * settings.reconcile_interval),
        holder=f"{settings.host_id}:{os.getpid()}",
    )

    def send(batch_id: str, vendor: str, ids: list[int]) -> int:
        return enqueue(app, batch_id, vendor, ids, config.limits(vendor).effective_chunk_size())

    def alive(workers: list[str]) -> set[str] | None:
        try:
            found = coordination.mget([alive_key(w) for w in workers])
        except redis.RedisError:
            return None  # unknown: nobody is declared dead on a Redis that does not answer
        return {w for w, v in zip(workers, found, strict=True) if v is not None}

    def on_dead(workers: set[str]) -> None:
        try:
            freed = free_slots_of(coordination, workers)
        except redis.RedisError as exc:  # their slots still lapse at their TTL
            log.warning("reconciler: freeing the slots of dead workers failed: %s", exc)
            return
        log.info("reconciler: workers %s are dead; freed %d call slots", sorted(workers), freed)

    def holders() -> set[str]:
        try:
            return slot_holders(coordination)
        except redis.RedisError:
            return set()

    deaths = DeathWatch(alive, on_dead, holders)
    # The vendor batch lane runs beside the rounds, in its own thread, while this replica
    # leads: ingesting a big job's results takes seconds, and must not delay lease releases.
    lane_leads = threading.Event()
    lane = threading.Thread(
        target=_run_lane,
        args=(Lane(engine, config, send), files, lane_leads, stop, settings.reconcile_interval),
        name="vendor-batch-lane",
        daemon=True,
    )
    lane.start()

    def reingest(batch_id: str) -> None:
        ingest(engine, settings, config, files, batch_id, send)

    log.info("reconciler %s running every %.1fs", lock.holder, settings.reconcile_interval)
    leading = False
    while not stop.is_set():
        try:
            if lock.hold() != leading:
                leading = not leading
                if leading:
                    lane_leads.set()
                else:
                    lane_leads.clear()
                log.info("reconciler %s %s", lock.holder, "leads" if leading else "stands by")
            if leading:
                depths = queue_depths(app, config.vendors)
                report = reconcile_once(
                    engine,
                    files,
                    send,
                    lambda vendor, d=depths: d.get(vendor, -1),
                    stale_enqueue_seconds=settings.stale_enqueue_seconds,
                    reingest=reingest,
                    deaths=deaths,
                    vendors=config.vendors,
                )
                if any(vars(report).values()):
                    log.info("reconciler: %s", report)
                if swept := sweep_expired_files(engine, files):
                    log.info("reconciler: %d expired files deleted", swept)
                if swept := sweep_expired_uploads(engine, files):
                    log.info("reconciler: %d expired uploads cleared", swept)
                if swept := sweep_response_cache(engine, config.cache):
                    log.info("reconciler: %d response cache entries dropped", swept)
        except Exception:
            log.exception("reconciler round failed; retrying")
        stop.wait(settings.reconcile_interval)
    lane_leads.clear()
    lane.join(timeout=30)
    if leading:
        with contextlib.suppress(Exception):
            lock.release()  # hand over at once instead of after the lock's TTL


def _run_lane(
    lane: Lane, files: FileStore, leads: threading.Event, stop: threading.Event, interval: float
) -> None:
    try:
        while not stop.is_set():
            if leads.is_set():
                try:
                    report = run_round(lane, files)
                except Exception:  # never end the thread: the next round retries
                    log.exception("vendor batch lane round failed")
                else:
                    if any(vars(report).values()):
                        log.info("vendor batch lane: %s", report)
            stop.wait(interval)
    finally:
        lane.close()
