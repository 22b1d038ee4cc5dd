"""Look at vendor jobs in flight, with backoff; cancel a job its batch no longer wants (cancelled,
or its deadline minus the margin reached); ingest the results of ended jobs."""

from __future__ import annotations

import logging
import time
from typing import Any

from batchgate.filestore import FileStore
from batchgate.pipeline.finalize import try_finalize
from batchgate.providers.batch_base import VendorBatchError
from batchgate.providers.registry import get_adapter
from batchgate.store import vendor_jobs as store
from batchgate.vendor_batch.context import Lane
from batchgate.vendor_batch.ingest import JobContext, groups, outcomes
from batchgate.vendor_batch.submit import abandon, send_online

log = logging.getLogger(__name__)

BACKOFF = 1.5  # each look at a job that has not ended waits this much longer than the last


def next_poll(lane: Lane, polls: int, now: float) -> float:
    s = lane.config.vendor_batch
    return now + min(s.max_poll_interval, s.poll_interval * BACKOFF**polls)


def poll_jobs(lane: Lane, now: float) -> int:
    """One look at every job due; returns how many ended."""
    ended = 0
    for job in store.jobs(lane.engine, ("submitted", "cancelling"), due_before=now):
        dep = lane.config.deployment(job.deployment_id)
        wire = lane.wires[job.vendor]
        target = lane.target(dep)
        try:
            state = wire.retrieve(lane.client, target, job.vendor_id)
            if not state.ended and job.status == "submitted" and _unwanted(lane, job, now):
                state = wire.cancel(lane.client, target, job.vendor_id)
                store.update_job(lane.engine, job.id, status="cancelling")
                log.info("vendor batch %s: cancelled (deadline margin or batch stopped)", job.id)
        except Exception as exc:  # the vendor does not answer: look again later
            log.warning("vendor batch %s: polling failed: %s", job.id, exc)
            gone = isinstance(exc, VendorBatchError) and exc.permanent
            if gone or _unwanted(lane, job, now):
                # The vendor refuses to tell us about the job (or can no longer, in time): its
                # lines go online rather than wait for results that may never come.
                abandon(lane, job.id, f"polling failed: {exc}")
                continue
            store.update_job(
                lane.engine,
                job.id,
                polls=job.polls + 1,
                next_poll_at=next_poll(lane, job.polls, now),
            )
            continue
        if state.ended:
            store.update_job(
                lane.engine, job.id, status="ended", vendor_status=state.status, ended_at=now
            )
            ended += 1
        else:
            # A job being cancelled is looked at often: its lines are wanted online soon.
            wait = 0 if job.status == "cancelling" else job.polls
            store.update_job(
                lane.engine,
                job.id,
                vendor_status=state.status,
                polls=job.polls + 1,
                next_poll_at=next_poll(lane, wait, now),
            )
    return ended


def _unwanted(lane: Lane, job: Any, now: float) -> bool:
    batch = lane.batch(job.batch_id)
    if batch is None or batch.status != "in_progress":
        return True
    return now >= batch.expires_at - lane.config.vendor_batch.deadline_margin


def ingest_ended(lane: Lane, files: FileStore) -> int:
    """Write the results of every ended job into its items; lines without a final result go
    online. Re-running it after a crash is safe: lines already written are not waiting."""
    lines = 0
    for job in store.jobs(lane.engine, ("ended",)):
        try:
            lines += ingest_job(lane, job)
        except Exception as exc:  # keep the job `ended`: the next round tries again
            log.warning("vendor batch %s: ingesting results failed: %s", job.id, exc)
            continue
        try:
            try_finalize(lane.engine, files, job.batch_id)
        except Exception:
            log.exception("finalizing %s after its vendor job failed", job.batch_id)
    return lines


def ingest_job(lane: Lane, job: Any) -> int:
    """Stream one ended job's results into its waiting lines, a group per transaction."""
    started = time.monotonic()
    dep = lane.config.deployment(job.deployment_id)
    batch = lane.batch(job.batch_id)
    waiting = {i.id: i for i in store.job_items(lane.engine, job.id)}
    ingested = 0
    if waiting and batch is not None:
        wire = lane.wires[job.vendor]
        target = lane.target(dep)
        ctx = JobContext(
            dep=dep,
            adapter=get_adapter(dep.adapter),
            target=target,
            endpoint=job.endpoint,
            prices=lane.prices(batch),
            validate_output=bool(batch.validate_output),
        )
        state = wire.retrieve(lane.client, target, job.vendor_id)
        owner = f"vendor_batch:{job.id}"
        for group in groups(wire.results(lane.client, target, state)):
            out = outcomes(ctx, waiting, group)
            if not out.updates:
                continue
            store.apply_results(lane.engine, job.id, owner, out.updates, out.attempts)
            for u in out.updates:
                waiting.pop(u.id, None)
            send_online(lane, [(i.batch_id, i.vendor, i.id) for i in out.online])
            ingested += len(out.updates)
            store.update_job(lane.engine, job.id, ingested=job.ingested + ingested)
    # Lines the vendor returned nothing for (a cancelled job's unstarted lines, unsendable ones).
    send_online(lane, store.release_to_online(lane.engine, job.id))
    store.update_job(lane.engine, job.id, status="ingested", ingested=job.ingested + ingested)
    took = time.monotonic() - started
    log.info(
        "vendor batch %s: %d result lines written in %.2f s (%.0f lines/s)",
        job.id,
        ingested,
        took,
        ingested / max(took, 1e-6),
    )
    return ingested
