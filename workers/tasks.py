"""Thin, idempotent tasks: they carry ids, and call into batchgate.

A redelivered message for items that are already leased or finished claims nothing and returns.
"""

from __future__ import annotations

import logging

from celery.signals import worker_process_shutdown

from batchgate.execution.runner import ChunkRun
from batchgate.execution.runtime import close_runtime, drain_on_sigterm, get_runtime
from batchgate.filestore import FileStore
from batchgate.names import TASK_RUN_CHUNK
from batchgate.pipeline.finalize import try_finalize
from batchgate.queueing import enqueue
from workers.celery import app

log = logging.getLogger(__name__)


def _enqueue(batch_id: str, vendor: str, ids: list[int]) -> None:
    rt = get_runtime()
    try:
        enqueue(app, batch_id, vendor, ids, rt.config.limits(vendor).effective_chunk_size())
    except Exception:  # the reconciler re-enqueues whatever we failed to send
        log.warning("could not enqueue %d re-routed items of %s", len(ids), batch_id)


@worker_process_shutdown.connect
def _close_runtime(**_: object) -> None:
    """A pool process that exits (warm shutdown, max tasks per child) ends its slots' keeper,
    HTTP clients and Redis connections before billiard's `os._exit`: nothing is left pending
    in a loop nobody closes."""
    try:
        close_runtime()
    except Exception:  # exiting anyway: what is still held frees at its TTL or lease
        log.warning("closing the worker runtime failed", exc_info=True)


@app.task(name=TASK_RUN_CHUNK, ignore_result=True, acks_late=True)
def run_chunk(batch_id: str, vendor: str, item_ids: list[int]) -> dict[str, int]:
    # Here, not at process start: billiard sets its own SIGTERM handler after the pool's init
    # hooks. A planned stop signals the whole process group; this chunk then finishes its calls
    # in flight and hands the rest back instead of dying mid-call (paid again after a restart).
    drain_on_sigterm()
    rt = get_runtime()
    report = rt.run(ChunkRun(rt, vendor, _enqueue).run(batch_id, list(item_ids)))
    files = FileStore(rt.settings.files_dir)
    for bid in report.batches:
        try_finalize(rt.engine, files, bid)
    return {
        "claimed": report.claimed,
        "succeeded": report.succeeded,
        "failed": report.failed,
        "rerouted": report.rerouted,
    }
