"""The reconciler process: runs `batchgate.pipeline.reconcile` every few seconds. Run as many
replicas as you like (one per zone): they take turns through a leader lock in Redis, and a
replica takes over within a few seconds of the leader's death."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

from batchgate.config import Config
from batchgate.coordination import LeaderLock, connect
from batchgate.filestore import FileStore
from batchgate.pipeline.ingest import ingest
from batchgate.pipeline.reconcile import reconcile_once
from batchgate.pipeline.retention import sweep_expired_files, sweep_expired_uploads
from batchgate.queueing import enqueue, queue_depths
from batchgate.settings import Settings
from batchgate.store import migrate
from batchgate.store.db import make_engine
from workers.celery import app

log = logging.getLogger(__name__)

# A leader that stops renewing is replaced after this long at least (3 rounds when slower).
LEADER_TTL_MIN_S = 5.0


def run_forever(settings: Settings, config: Config, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    engine = make_engine(settings.resolved_database_url())
    migrate.upgrade(engine)
    files = FileStore(settings.files_dir)
    lock = LeaderLock(
        connect(settings.redis_url or ""),
        "reconciler",
        ttl_s=max(LEADER_TTL_MIN_S, 3 * settings.reconcile_interval),
        holder=f"{settings.host_id}:{os.getpid()}",
    )

    def send(batch_id: str, vendor: str, ids: list[int]) -> int:
        return enqueue(app, batch_id, vendor, ids, config.limits(vendor).effective_chunk_size())

    def reingest(batch_id: str) -> None:
        ingest(engine, settings, config, files, batch_id, send)

    log.info("reconciler %s running every %.1fs", lock.holder, settings.reconcile_interval)
    leading = False
    while not stop.is_set():
        try:
            if lock.hold() != leading:
                leading = not leading
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
                    vendors=config.vendors,
                )
                if any(vars(report).values()):
                    log.info("reconciler: %s", report)
                if swept := sweep_expired_files(engine, files):
                    log.info("reconciler: %d expired files deleted", swept)
                if swept := sweep_expired_uploads(engine, files):
                    log.info("reconciler: %d expired uploads cleared", swept)
        except Exception:
            log.exception("reconciler round failed; retrying")
        stop.wait(settings.reconcile_interval)
    if leading:
        with contextlib.suppress(Exception):
            lock.release()  # hand over at once instead of after the lock's TTL
