"""The Celery side as the library sees it: broker settings and how work is enqueued.

Messages carry a batch id, a vendor name and item ids — never prompts or keys. The worker app in
`workers/` is built from the same `celery_config`, so sender and consumer always agree.
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from batchgate.names import CONTROL_QUEUE, TASK_RUN_CHUNK, chunk_label, vendor_queue
from batchgate.settings import Settings

# Longer than any task may run: a message is redelivered only if its worker really died
# (the DB reconciler recovers faster than this anyway).
VISIBILITY_TIMEOUT = 3 * 3600
TASK_TIME_LIMIT = 2 * 3600

# The broker connection pool of every process. A control broadcast (inspect, ping,
# enable_events, the event receiver's wake-up) holds one pooled connection while its producer
# takes a second from the same pool, and kombu waits for that one with no timeout: N threads
# broadcasting at once with a pool of N or fewer deadlock for good (seen with a pool of 4: Flower
# never captured an event, and parallel /healthz calls hung the API). Python's default thread
# pools stop at 32 threads, each needs at most 2 connections, plus spares; they open lazily.
BROKER_POOL_LIMIT = 2 * 32 + 2


def celery_config(settings: Settings) -> dict[str, object]:
    if not settings.redis_url:
        raise RuntimeError("BATCHGATE_REDIS_URL is not set (batchgate up sets it for its children)")
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT},
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": TASK_TIME_LIMIT,
        "task_default_queue": CONTROL_QUEUE,
        "task_create_missing_queues": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        # Every process (API health checks, Flower, workers) may broadcast from many threads at
        # once: see BROKER_POOL_LIMIT. Connections open lazily, so a high bound costs nothing.
        "broker_pool_limit": BROKER_POOL_LIMIT,
    }


def make_celery(settings: Settings, name: str = "batchgate") -> Celery:
    app = Celery(name)
    app.conf.update(celery_config(settings))
    return app


def chunked(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def enqueue(app: Celery, batch_id: str, vendor: str, ids: Sequence[int], chunk_size: int) -> int:
    """Send one run_chunk message per chunk to the vendor's queue; returns messages sent."""
    n = 0
    with app.producer_or_acquire() as producer:
        for chunk in chunked(ids, chunk_size):
            app.send_task(
                TASK_RUN_CHUNK,
                args=[batch_id, vendor, chunk],
                shadow=chunk_label(batch_id, vendor, len(chunk)),
                # What Flower shows as the arguments: the ids, counted (a chunk has hundreds).
                argsrepr=f"({batch_id!r}, {vendor!r}, <{len(chunk)} item ids>)",
                queue=vendor_queue(vendor),
                producer=producer,
            )
            n += 1
    return n
