"""Finalize: once every item is terminal, write the output and error files in input order.

Exactly one finalizer wins the `→ finalizing` transition; a finalizer that dies is redone by the
reconciler. Files are written to a temp file, fsynced and renamed (never a partial file).

The batch's cost totals are a summary of its attempt rows, and rows can land after it: a worker
paused past the batch's end writes its (duplicate) attempts late. Whoever lands such rows calls
`refresh_summary` after committing them, and the finalizer checks after writing its summary
that no row landed meanwhile; so the totals always end up equal to the sum over attempt rows.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from sqlalchemy.engine import Connection, Engine

from batchgate.filestore import FileStore, new_id
from batchgate.money import usd_str
from batchgate.pipeline.lanes import lane_summary
from batchgate.pipeline.output_lines import LineWriter
from batchgate.store import batches as batch_store
from batchgate.store import summary as summary_store
from batchgate.store.answers import ID_AT, STATE_AT, line_rows
from batchgate.store.attempts import reasks_by_item
from batchgate.store.db import reading
from batchgate.store.files import delete_file_rows
from batchgate.store.items import has_pending

# The finalizer's lease: `finalizing_at`, renewed while it writes, fencing its last write.
FINALIZE_RENEW_SECONDS = 20.0


class FinalizeLost(Exception):
    """Another finalizer took the batch over (this one was presumed dead): nothing committed."""


def try_finalize(
    engine: Engine, files: FileStore, batch_id: str, *, stale_before: int | None = None
) -> bool:
    """Finalize the batch if all its items are terminal. Returns True if this call did it.
    With `stale_before`, also take over a finalizer whose lease was last renewed before it."""
    if has_pending(engine, batch_id):
        return False
    now = int(time.time())
    if not batch_store.claim_finalize(engine, batch_id, now, stale_before):
        return False
    try:
        write_results(engine, files, batch_id, lease=now)
    except FinalizeLost:
        return False
    return True


def _renew(engine: Engine, batch_id: str, lease: int) -> int:
    """Move the finalize lease on; FinalizeLost if it is no longer ours."""
    new = max(lease, int(time.time()))
    if not batch_store.renew_finalize(engine, batch_id, lease, new):
        raise FinalizeLost(batch_id)
    return new


@dataclass
class _Written:
    """The two result files as written, before the batch's end is committed."""

    ids: dict[str, str]
    rels: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=lambda: {"out": 0, "err": 0})
    sizes: dict[str, int] = field(default_factory=lambda: {"out": 0, "err": 0})
    shas: dict[str, Any] = field(
        default_factory=lambda: {"out": hashlib.sha256(), "err": hashlib.sha256()}
    )
    expired: bool = False
    cancelled: bool = False


def write_results(engine: Engine, files: FileStore, batch_id: str, lease: int) -> None:
    """Write the output and error files and commit the batch's end, while holding `lease`
    (FinalizeLost, and nothing committed, if another finalizer took it)."""
    batch = batch_store.batch_row(engine, batch_id)
    w = _Written(ids={"out": new_id("file-"), "err": new_id("file-")})
    with (
        files.atomic_writer(w.ids["out"]) as (out_rel, out_fp),
        files.atomic_writer(w.ids["err"]) as (err_rel, err_fp),
        reading(engine) as conn,
    ):
        w.rels = {"out": out_rel, "err": err_rel}
        lease = _write_lines(engine, conn, batch_id, lease, w, {"out": out_fp, "err": err_fp})
    summary = summarize(engine, batch_id)
    try:
        _commit_end(engine, batch, lease, w, summary)
    except FinalizeLost:
        files.delete(out_rel)
        files.delete(err_rel)
        raise
    if not w.lines["err"]:
        files.delete(err_rel)
        delete_file_rows(engine, [w.ids["err"]])
    refresh_summary(engine, batch_id, seen=summary["attempt_rows"])


def _write_lines(
    engine: Engine,
    conn: Connection,
    batch_id: str,
    lease: int,
    w: _Written,
    fps: dict[str, BinaryIO],
) -> int:
    """Build the batch's lines a block at a time into its two files, renewing the lease as it
    goes (FinalizeLost if it was taken over); returns the lease as last renewed."""
    renewed = time.monotonic()  # about when `lease` was taken or last renewed
    reasks = reasks_by_item(conn, batch_id)
    failures: set[str] = set()  # the states of the lines that did not succeed
    encoded = LineWriter().encoded
    # A block is written and hashed on a thread (both release the GIL for large buffers) while
    # the next one is read and built; one block in flight keeps memory flat.
    written: Future[None] | None = None
    with ThreadPoolExecutor(1, thread_name_prefix="batchgate-finalize") as writer:
        for rows in line_rows(conn, batch_id):
            # Checked once a block (~5,000 lines, well under a second), not once a line.
            if time.monotonic() - renewed > FINALIZE_RENEW_SECONDS:
                lease, renewed = _renew(engine, batch_id, lease), time.monotonic()
            out: list[bytes] = []
            err: list[bytes] = []
            for row in rows:
                line = encoded(row, reasks.get(row[ID_AT], 0))
                state = row[STATE_AT]
                if state == "succeeded":
                    out.append(line)
                else:
                    err.append(line)
                    failures.add(state)
            if written is not None:
                written.result()
            written = writer.submit(_flush, w, {"out": out, "err": err}, fps)
        if written is not None:
            written.result()  # raises what the write raised, before anything is committed
    w.expired, w.cancelled = "expired" in failures, "cancelled" in failures
    return lease


def _flush(w: _Written, blocks: dict[str, list[bytes]], fps: dict[str, BinaryIO]) -> None:
    """Write a block of lines to each file: one join, write and hash per block, not per line."""
    for key, lines in blocks.items():
        if not lines:
            continue
        data = b"".join(lines)
        fps[key].write(data)
        w.shas[key].update(data)
        w.sizes[key] += len(data)
        w.lines[key] += len(lines)


def _commit_end(engine: Engine, batch: Any, lease: int, w: _Written, summary: dict) -> None:
    """Register the files and end the batch in one transaction, fenced by the lease."""
    now = int(time.time())
    # A cancel that came too late to stop any line leaves a completed batch, never a
    # `cancelled` one whose lines all ran (a batch cancelled before it had lines is cancelled).
    stopped = w.cancelled or not (w.lines["out"] + w.lines["err"])
    if batch.cancelling_at and stopped:
        status = "cancelled"
    else:
        status = "expired" if w.expired else "completed"
    stamp = {"cancelled": "cancelled_at", "expired": "expired_at", "completed": "completed_at"}
    values = {
        "status": status,
        "output_file_id": w.ids["out"],
        "error_file_id": w.ids["err"] if w.lines["err"] else None,
        "completed_count": w.lines["out"],
        "failed_count": w.lines["err"],
        "summary_json": json.dumps(summary),
        stamp[status]: now,
    }
    expires = now + batch.output_expires_seconds if batch.output_expires_seconds else None
    rows = [
        {
            "id": w.ids[key],
            "tenant": batch.tenant,
            "purpose": "batch_output",
            "filename": f"{batch.id}_{'output' if key == 'out' else 'error'}.jsonl",
            "bytes": w.sizes[key],
            "line_count": w.lines[key],
            "sha256": w.shas[key].hexdigest(),
            "created_at": now,
            "expires_at": expires,
            "path": w.rels[key],
            "status": "processed",
        }
        for key in ("out", "err")
    ]
    if not batch_store.end_finalized(engine, batch.id, lease, values, rows):
        raise FinalizeLost(batch.id)


def refresh_summary(engine: Engine, batch_id: str, seen: int | None = None) -> bool:
    """Recompute a finished batch's totals from its attempt rows (rows landed after it was
    summarised). With `seen`, only if the ledger no longer has that many rows. True if written."""
    if seen is not None:
        with reading(engine) as conn:
            if summary_store.attempt_rows(conn, batch_id) == seen:
                return False  # the usual case, asked after every finalize: one count, no summary
    return summary_store.rewrite_summary(engine, batch_id, json.dumps(summarize(engine, batch_id)))


def summarize(engine: Engine, batch_id: str) -> dict[str, Any]:
    """Cost and usage totals from the attempts (the ledger of what was paid for)."""
    with reading(engine) as conn:
        ledger = summary_store.ledger_by_model(conn, batch_id)
        lines = summary_store.lines_by_model(conn, batch_id)
        lanes = lane_summary(conn, batch_id)
    by_model = [r[:7] for r in ledger if r[1]]  # models with paid calls (not only lost ones)
    dup_pusd, dup_calls, lost, rows = (sum(int(r[i]) for r in ledger) for i in range(7, 11))
    lines_by_model = {r[0]: int(r[1]) for r in lines}
    budget = sum(int(r[2]) for r in lines)
    fallbacks = sum(int(r[3]) for r in lines)
    hits, saved = (sum(int(r[i]) for r in lines) for i in (4, 5))
    models = {}
    total_pusd = 0
    usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "cached_tokens": 0}
    unpriced = False
    for alias, calls, tin, tout, tcache, pusd, unp in by_model:
        total_pusd += int(pusd)
        usage["input_tokens"] += int(tin)
        usage["output_tokens"] += int(tout)
        usage["cached_tokens"] += int(tcache)
        unpriced = unpriced or bool(unp)
        models[alias] = {
            "lines": int(lines_by_model.get(alias, 0)),
            "calls": int(calls),
            "input_tokens": int(tin),
            "output_tokens": int(tout),
            "cost_usd": usd_str(int(pusd)),
            "unpriced": bool(unp),
        }
    usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    return {
        "lanes": lanes,
        "cost_usd": usd_str(total_pusd),
        "cost_pusd": total_pusd,
        "duplicate_spend_usd": usd_str(dup_pusd),
        "duplicate_calls": dup_calls,
        "lost_calls": int(lost),
        "attempt_rows": int(rows),
        "fallback_lines": int(fallbacks),
        "budget_exceeded_lines": int(budget),
        "cache_hits": hits,
        "cache_saved_usd": usd_str(saved),
        "unpriced": unpriced,
        "usage": usage,
        "models": models,
    }
