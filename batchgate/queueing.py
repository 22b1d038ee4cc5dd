"""The Celery side as the library sees it: broker settings and how work is enqueued.

Messages carry a batch id, a vendor name and item ids — never prompts or keys. The worker app in
`workers/` is built from the same `celery_config`, so sender and consumer always agree.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from celery import Celery
from celery.app.amqp import AMQP, task_message
from kombu.exceptions import ChannelError

from batchgate.coordination import celery_broker_url, sentinel_transport_options
from batchgate.names import CONTROL_QUEUE, TASK_RUN_CHUNK, chunk_label, vendor_queue
from batchgate.settings import Settings

log = logging.getLogger(__name__)

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
    broker = settings.resolved_broker_url()
    return {
        "broker_url": celery_broker_url(broker),
        "broker_connection_retry_on_startup": True,
        **broker_options(broker),
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


def is_amqp(url: str) -> bool:
    return url.split("://", 1)[0] in ("amqp", "amqps", "pyamqp")


def broker_options(url: str) -> dict[str, object]:
    """What differs between the brokers. RabbitMQ: quorum queues (replicated, and they redeliver
    a message whose consumer died), publisher confirms (a send returns once the broker has the
    message); acks_late is the same on both. Redis: a visibility timeout stands in for acks."""
    if is_amqp(url):
        return {
            "broker_transport_options": {"confirm_publish": True},
            "task_default_queue_type": "quorum",
            "task_create_missing_queue_type": "quorum",
            # Quorum queues refuse global QoS; Celery then applies prefetch per consumer.
            "worker_detect_quorum_queues": True,
        }
    options: dict[str, object] = {"visibility_timeout": VISIBILITY_TIMEOUT}
    if url.startswith("sentinel://"):
        options.update(sentinel_transport_options(url))
    return {"broker_transport_options": options}


def queue_depths(app: Celery, vendors: Sequence[str]) -> dict[str, int]:
    """Messages waiting on each vendor's queue, on either broker; -1 where the broker did not
    answer (unknown: the reconciler must not take the queue for idle)."""
    depths = dict.fromkeys(vendors, -1)
    try:
        with app.connection_for_read() as conn:
            for vendor in vendors:
                channel = conn.channel()
                try:
                    ok = channel.queue_declare(queue=vendor_queue(vendor), passive=True)
                    depths[vendor] = int(ok.message_count)
                except ChannelError as exc:
                    # A queue nobody declared yet holds nothing (Redis: an empty list is no key).
                    if getattr(exc, "code", None) != 404 and "NOT_FOUND" not in str(exc):
                        raise
                    depths[vendor] = 0
                finally:
                    with contextlib.suppress(Exception):
                        channel.close()
    except Exception as exc:  # broker down: unknown
        log.warning("queue depths unknown: %s", type(exc).__name__)
    return depths


class ShadowNamedAMQP(AMQP):
    """Celery's message builder, with the task-sent event named like the task's other events.

    Celery names the task-sent event after the task (`batchgate.run_chunk`) but the worker's
    task-received/started/succeeded events after its `shadow` header. Monitors (Flower) keep the
    name of the last event applied, and a task-sent event that arrives after the worker's events
    (RabbitMQ: the sender publishes it only once the broker has confirmed the task, by which
    time a worker may have run it) renamed the task back to its plain name."""

    def as_task_v2(self, task_id: str, name: str, *args: object, **kwargs: object) -> task_message:
        message = super().as_task_v2(task_id, name, *args, **kwargs)
        shadow = message.headers.get("shadow")
        if shadow and message.sent_event is not None:
            message.sent_event["name"] = shadow
        return message


def make_celery(settings: Settings, name: str = "batchgate") -> Celery:
    app = Celery(name, amqp=ShadowNamedAMQP)
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
