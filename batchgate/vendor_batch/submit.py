"""Submit waiting lines as vendor jobs: an intent row (with its lines assigned) is committed
before the vendor is called, and the call carries the intent id, so a job whose creation answer
was lost is found again (`recover`), never submitted twice."""

from __future__ import annotations

import json
import logging
import time
import uuid

from batchgate.errors import ProviderError
from batchgate.execution import faults
from batchgate.providers.batch_base import VendorBatchError
from batchgate.providers.registry import get_adapter
from batchgate.store import vendor_jobs as store
from batchgate.store.enqueued import mark_enqueued
from batchgate.vendor_batch.context import Lane
from batchgate.vendor_batch.ingest import custom_id

log = logging.getLogger(__name__)

LINE_OVERHEAD = 256  # bytes a line's wrapping (custom_id, url, params) adds to its body


def submit_waiting(lane: Lane, now: float) -> int:
    """Form and submit jobs for lines waiting unassigned, within each vendor's cap of jobs in
    flight and its per-job limits. Returns how many jobs were submitted."""
    settings = lane.config.vendor_batch
    submitted = 0
    for w in store.waiting(lane.engine):
        dep = lane.deployment_for(w.alias, w.vendor, w.endpoint)
        batch = lane.batch(w.batch_id)
        late = batch is not None and now >= batch.expires_at - settings.deadline_margin
        if dep is None or late:
            # No batch API for these lines, or too close to the deadline to wait for one.
            _online_unassigned(lane, w)
            continue
        max_requests, max_bytes = settings.job_limits(dep.adapter)
        while store.in_flight(lane.engine, dep.adapter) < settings.jobs_in_flight(dep.adapter):
            picked = store.waiting_ids(lane.engine, w, max_requests)
            if not picked:
                break
            ids, size = [], 0
            for item_id, body_bytes in picked:
                size += body_bytes + LINE_OVERHEAD
                if ids and size > max_bytes:
                    break
                ids.append(item_id)
            job = {
                "id": "vj_" + uuid.uuid4().hex[:20],
                "batch_id": w.batch_id,
                "vendor": dep.adapter,
                "deployment_id": dep.id,
                "endpoint": w.endpoint,
                "status": "intent",
                "created_at": now,
                "next_poll_at": now,
            }
            if not store.create_intent(lane.engine, job, ids):
                break
            submit_job(lane, job["id"])
            submitted += 1
    return submitted


def submit_job(lane: Lane, job_id: str) -> None:
    """Build the job's input from its lines and create it at the vendor."""
    job = next(j for j in store.jobs(lane.engine, ("intent",)) if j.id == job_id)
    dep = lane.config.deployment(job.deployment_id)
    wire = lane.wires[job.vendor]
    adapter = get_adapter(dep.adapter)
    target = lane.target(dep)
    lines = []
    for item in store.job_items(lane.engine, job_id):
        try:
            req = adapter.build_request(job.endpoint, item.body, target)
        except ProviderError:
            continue  # it cannot be sent as is: the online lane gives it its proper error line
        line = wire.line(custom_id(item.id), job.endpoint, req)
        # Compact, so a line is never longer than the stored body it was sized by (a body is
        # stored as the client wrote it, compact or not).
        lines.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if not lines:
        abandon(lane, job_id, "no line of this job can be sent to the vendor's batch API")
        return
    try:
        state = wire.submit(lane.client, target, job.endpoint, b"\n".join(lines) + b"\n", job_id)
    except VendorBatchError as exc:
        if exc.permanent:
            abandon(lane, job_id, str(exc))
        else:  # no answer: the job may exist; `recover` looks for it before submitting again
            log.warning("vendor batch %s: submitting failed, will look again: %s", job_id, exc)
        return
    except Exception as exc:  # network trouble: the same as no answer
        log.warning("vendor batch %s: submitting failed, will look again: %s", job_id, exc)
        return
    faults.fire(faults.VENDOR_SUBMIT_POINT, job_id)
    store.update_job(
        lane.engine,
        job_id,
        status="submitted",
        vendor_id=state.vendor_id,
        vendor_status=state.status,
        submitted_at=time.time(),
        next_poll_at=time.time() + lane.config.vendor_batch.poll_interval,
    )
    log.info("vendor batch %s: %d lines submitted as %s", job_id, len(lines), state.vendor_id)


def recover(lane: Lane, now: float) -> int:
    """Intents left without a vendor id (a crash, or no answer, between intent and record):
    adopt the vendor's job carrying the intent if there is one, else submit now."""
    n = 0
    settled = now - lane.config.vendor_batch.recover_after
    for job in store.jobs(lane.engine, ("intent",)):
        if job.created_at > settled:
            continue  # perhaps still being submitted, by another reconciler
        dep = lane.config.deployment(job.deployment_id)
        wire = lane.wires[job.vendor]
        if hasattr(wire, "taken"):
            wire.taken = store.known_vendor_ids(lane.engine, job.vendor)
        try:
            found = wire.find(lane.client, lane.target(dep), job.id, job.lines, job.created_at)
        except Exception as exc:  # the vendor does not answer: look again next round
            log.warning("vendor batch %s: looking for a lost job failed: %s", job.id, exc)
            continue
        if found is not None:
            store.update_job(
                lane.engine,
                job.id,
                status="submitted",
                vendor_id=found,
                submitted_at=time.time(),
                next_poll_at=time.time(),
            )
            log.info("vendor batch %s: found its job %s at the vendor", job.id, found)
        else:
            submit_job(lane, job.id)
        n += 1
    return n


def abandon(lane: Lane, job_id: str, why: str) -> None:
    """Give a job up (the vendor refused it, or will not say how it went): its lines go
    online."""
    log.warning("vendor batch %s given up, its lines go online: %s", job_id, why)
    store.update_job(lane.engine, job_id, status="failed", error=why[:2000], ended_at=time.time())
    send_online(lane, store.release_to_online(lane.engine, job_id))


def _online_unassigned(lane: Lane, w: store.Waiting) -> None:
    ids = [i for i, _ in store.waiting_ids(lane.engine, w, 1_000_000)]
    send_online(lane, store.release_ids_to_online(lane.engine, ids))


def send_online(lane: Lane, rows: list[tuple[str, str, int]]) -> None:
    """Enqueue lines now on the online lane (the reconciler re-sends any this fails to)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for batch_id, vendor, item_id in rows:
        groups.setdefault((batch_id, vendor), []).append(item_id)
    for (batch_id, vendor), ids in groups.items():
        try:
            lane.enqueue(batch_id, vendor, sorted(ids))
            mark_enqueued(lane.engine, ids)
        except Exception as exc:
            log.warning("enqueueing %d lines of %s failed: %s", len(ids), batch_id, exc)
