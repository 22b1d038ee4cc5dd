"""A chunk's task keeps its shadow name (`run_chunk VENDOR BATCH ×N`) in monitors whatever order
its events arrive in: on RabbitMQ the sender's task-sent event often arrives after the worker's."""

from __future__ import annotations

import time

from celery.events.state import State

from batchgate.names import TASK_RUN_CHUNK, chunk_label
from batchgate.queueing import make_celery
from batchgate.settings import Settings


def _event(kind: str, clock: int, **fields: object) -> dict[str, object]:
    now = time.time()
    return {"type": kind, "clock": clock, "timestamp": now, "local_received": now, **fields}


def test_a_late_task_sent_event_does_not_rename_the_chunk_back_to_its_plain_name() -> None:
    app = make_celery(Settings(broker_url="memory://"))
    label = chunk_label("batch_abc", "openai", 3)
    message = app.amqp.as_task_v2(
        "task-1",
        TASK_RUN_CHUNK,
        args=["batch_abc", "openai", [1, 2, 3]],
        shadow=label,
        create_sent_event=True,
    )
    assert message.sent_event["name"] == label

    state = State()
    # The worker's events first, then the sender's (published once the broker confirmed it).
    state.event(_event("task-received", 1, uuid="task-1", name=label, hostname="w@h"))
    state.event(_event("task-succeeded", 2, uuid="task-1", hostname="w@h", runtime=0.1))
    state.event(_event("task-sent", 3, hostname="api@h", **message.sent_event))
    task = state.tasks["task-1"]
    assert (task.name, task.state) == (label, "SUCCESS")
