"""The reconciler process: runs `batchgate.pipeline.reconcile` every few seconds."""

from __future__ import annotations

import logging
import signal
import threading

import redis

from batchgate.config import Config
from batchgate.filestore import FileStore
from batchgate.names import alive_key
from batchgate.pipeline.ingest import ingest
from batchgate.pipeline.reconcile import DeathWatch, reconcile_once
from batchgate.queueing import enqueue
from batchgate.routing.reclaim import free_slots_of
from batchgate.settings import Settings
from batchgate.store import migrate
from batchgate.store.db import make_engine
from workers.celery import app

log = logging.getLogger(__name__)


def run_forever(settings: Settings, config: Config, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    engine = make_engine(settings.resolved_database_url())
    migrate.upgrade(engine)
    files = FileStore(settings.files_dir)
    broker = redis.Redis.from_url(settings.redis_url or "")

    def send(batch_id: str, vendor: str, ids: list[int]) -> int:
        return enqueue(app, batch_id, vendor, ids, config.limits(vendor).effective_chunk_size())

    def queue_length(vendor: str) -> int:
        try:
            return int(broker.llen(vendor))
        except redis.RedisError:
            return -1  # unknown: don't treat the queue as idle

    def alive(workers: list[str]) -> set[str] | None:
        try:
            found = broker.mget([alive_key(w) for w in workers])
        except redis.RedisError:
            return None  # unknown: nobody is declared dead on a broker that does not answer
        return {w for w, v in zip(workers, found, strict=True) if v is not None}

    def on_dead(workers: set[str]) -> None:
        try:
            freed = free_slots_of(broker, workers)
        except redis.RedisError as exc:  # their slots still lapse at their TTL
            log.warning("reconciler: freeing the slots of dead workers failed: %s", exc)
            return
        log.info("reconciler: workers %s are dead; freed %d call slots", sorted(workers), freed)

    deaths = DeathWatch(alive, on_dead)

    def reingest(batch_id: str) -> None:
        ingest(engine, settings, config, files, batch_id, send)

    log.info("reconciler running every %.1fs", settings.reconcile_interval)
    while not stop.is_set():
        try:
            report = reconcile_once(
                engine,
                files,
                send,
                queue_length,
                stale_enqueue_seconds=settings.stale_enqueue_seconds,
                reingest=reingest,
                deaths=deaths,
                vendors=config.vendors,
            )
            if any(vars(report).values()):
                log.info("reconciler: %s", report)
        except Exception:
            log.exception("reconciler round failed; retrying")
        stop.wait(settings.reconcile_interval)
