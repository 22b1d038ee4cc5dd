"""One round of the vendor batch lane, run by the reconciler's periodic loop (never a worker:
a vendor job can run for hours, and nothing waits on it but a row)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from batchgate.filestore import FileStore
from batchgate.vendor_batch.context import Lane
from batchgate.vendor_batch.poll import ingest_ended, poll_jobs
from batchgate.vendor_batch.submit import recover, submit_waiting

log = logging.getLogger(__name__)


@dataclass
class LaneReport:
    recovered: int = 0
    submitted: int = 0
    ended: int = 0
    ingested: int = 0


def run_round(lane: Lane, files: FileStore, now: float | None = None) -> LaneReport:
    """Recover intents, poll jobs due, ingest ended ones, submit waiting lines. Each stage
    stands alone: a failure in one is logged and the others still run."""
    now = time.time() if now is None else now
    report = LaneReport()
    stages = (
        ("recover", lambda: setattr(report, "recovered", recover(lane, now))),
        ("poll", lambda: setattr(report, "ended", poll_jobs(lane, now))),
        ("ingest", lambda: setattr(report, "ingested", ingest_ended(lane, files))),
        ("submit", lambda: setattr(report, "submitted", submit_waiting(lane, now))),
    )
    for name, stage in stages:
        try:
            stage()
        except Exception:
            log.exception("vendor batch lane: %s failed; next round retries", name)
    return report
