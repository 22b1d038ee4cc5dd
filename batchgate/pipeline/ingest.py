"""Create a batch from an uploaded file: validate it whole, store one item per line, enqueue.

Nothing is called before the whole file has validated; a bad file ends as a `failed` batch with
line-numbered errors and no items.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from batchgate.config import VENDOR_BATCH_LIMITS, Config
from batchgate.filestore import FileStore, new_id
from batchgate.pricing import pin_prices
from batchgate.settings import Settings
from batchgate.store.db import reading
from batchgate.store.items import BATCH, ITEM, insert_items
from batchgate.store.models import Batch, File
from batchgate.validation import Limits, LineError, iter_requests, validate_file

log = logging.getLogger(__name__)
FILE = File.__table__  # type: ignore[attr-defined]

WINDOWS = {"24h": 24 * 3600}

# (batch_id, vendor, ids) → messages sent
Enqueue = Callable[[str, str, list[int]], int]


@dataclass(frozen=True)
class BatchRequest:
    tenant: str
    input_file_id: str
    endpoint: str
    completion_window: str = "24h"
    metadata: dict[str, str] | None = None
    # None: the config's chains; a list (even empty) replaces them, as in LiteLLM.
    fallbacks: tuple[str, ...] | None = None
    max_cost_usd: Decimal | None = None
    model: str | None = None
    output_expires_seconds: int | None = None
    id_prefix: str = "batch_"  # `msgbatch_` for Anthropic Message Batches
    total: int = 0  # lines, when known before ingest counts them (Message Batches)
    validate_output: bool = True
    priority: int = 0
    cache: bool = False
    vendor_batch: bool = False


def window_seconds(window: str) -> int:
    if window in WINDOWS:
        return WINDOWS[window]
    # Extension: any "<n>h" / "<n>m" / "<n>s"; short windows make expiry testable.
    unit = {"h": 3600, "m": 60, "s": 1}.get(window[-1:])
    if unit is None or not window[:-1].isdigit() or int(window[:-1]) <= 0:
        raise ValueError(f"completion_window must be like '24h', got {window!r}")
    return int(window[:-1]) * unit


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_lines=settings.max_lines,
        max_file_bytes=settings.max_file_bytes,
        max_line_bytes=settings.max_line_bytes,
    )


def create_batch(engine: Engine, req: BatchRequest) -> Batch:
    now = int(time.time())
    batch = Batch(
        id=new_id(req.id_prefix),
        tenant=req.tenant,
        input_file_id=req.input_file_id,
        endpoint=req.endpoint,
        completion_window=req.completion_window,
        status="validating",
        created_at=now,
        expires_at=now + window_seconds(req.completion_window),
        metadata_json=json.dumps(req.metadata) if req.metadata else None,
        model_override=req.model,
        fallbacks_json=json.dumps(None if req.fallbacks is None else list(req.fallbacks)),
        max_cost_usd=str(req.max_cost_usd) if req.max_cost_usd is not None else None,
        output_expires_seconds=req.output_expires_seconds,
        total=req.total,
        validate_output=req.validate_output,
        priority=req.priority,
        cache=req.cache,
        vendor_batch=req.vendor_batch,
        # The creating API holds the ingest from now: dead before it starts, it is redone soon.
        ingest_attempts=1,
        ingest_lease_until=now + INGEST_LEASE_SECONDS,
    )
    with engine.begin() as conn:
        conn.execute(BATCH.insert().values(**batch.model_dump()))
    return batch


def _fail(engine: Engine, batch_id: str, errors: list[LineError]) -> None:
    data = [{"code": e.code, "message": e.message, "line": e.line, "param": None} for e in errors]
    with engine.begin() as conn:
        conn.execute(
            update(BATCH)
            .where(BATCH.c.id == batch_id)
            .values(
                status="failed",
                failed_at=int(time.time()),
                errors_json=json.dumps({"object": "list", "data": data}),
            )
        )


def ingest(
    engine: Engine,
    settings: Settings,
    config: Config,
    files: FileStore,
    batch_id: str,
    enqueue: Enqueue,
) -> str:
    """Validate, store items and enqueue; returns the batch's new status."""
    with reading(engine) as conn:
        batch = conn.execute(select(BATCH).where(BATCH.c.id == batch_id)).first()
        if batch is None or batch.status != "validating":
            return batch.status if batch else "missing"
        file = conn.execute(select(FILE).where(FILE.c.id == batch.input_file_id)).first()
    if file is not None:
        hold_ingest(engine, batch_id, file.bytes, time.time())
    if file is None:
        _fail(engine, batch_id, [LineError(None, "file_not_found", "input file not found")])
        return "failed"
    fallbacks = json.loads(batch.fallbacks_json)
    named = [batch.model_override, *(fallbacks or ())]
    unknown = [a for a in named if a and not config.deployments_for(a)]
    if unknown:
        _fail(engine, batch_id, [LineError(None, "unknown_model", f"unknown model {unknown[0]!r}")])
        return "failed"
    limits = limits_from(settings)
    with files.open(file.path) as fp:
        report = validate_file(
            fp,
            endpoint=batch.endpoint,
            known_models=None if batch.model_override else config.aliases,
            default_model=batch.model_override,
            limits=limits,
        )
    if not report.ok:
        _fail(engine, batch_id, report.errors)
        return "failed"

    chains: dict[str, list[str]] = {}
    # Lines a vendor batch API can serve wait for the vendor batch lane, never for a worker:
    # stored so, so that no reconciler round can enqueue them in between.
    lane_vendors = vendor_batch_vendors(config) if batch.vendor_batch else set()

    def rows() -> Iterator[dict[str, Any]]:
        with files.open(file.path) as fp:
            for line in iter_requests(fp, limits=limits, default_model=batch.model_override):
                body = line.body
                if batch.model_override:
                    body = {**body, "model": batch.model_override}
                alias = body["model"]
                chain = chains.get(alias)
                if chain is None:
                    chain = chains[alias] = config.chain(alias, fallbacks)
                vendor = config.vendor_for(alias, line.index)
                yield {
                    "batch_id": batch_id,
                    "idx": line.index,
                    "custom_id": line.custom_id,
                    "body": json.dumps(body, ensure_ascii=False),
                    "alias": alias,
                    "vendor": vendor,
                    "chain_json": json.dumps(chain),
                    "state": "vendor" if vendor in lane_vendors else "queued",
                }

    now = time.time()
    try:
        with engine.begin() as conn:
            _store_items(conn, batch_id, rows(), chains, config, now)
    except _NoLongerValidating:
        # Cancelled while we read the file: the items were rolled back with the transaction.
        return "cancelled"
    enqueue_batch(engine, config, batch_id, enqueue)
    return "in_progress"


# The ingest's owner lease: long enough to read and store a file at a slow pace; when it lapses
# (the API died mid-ingest) the reconciler takes the ingest over at once instead of waiting.
INGEST_LEASE_SECONDS = 30.0
INGEST_BYTES_PER_SECOND = 1_000_000  # measured 8.7 MB/s (benchmarks/RESULTS.md): 8x margin


def lane_adapters(config: Config) -> list[str]:
    return [a for a in VENDOR_BATCH_LIMITS if config.vendor_batch.supports(a)]


def vendor_batch_vendors(config: Config) -> set[str]:
    """Vendors (queues) whose deployments have a batch API the lane can submit to."""
    return {d.vendor for d in config.deployments if config.vendor_batch.supports(d.adapter)}


def ingest_lease(file_bytes: int, now: float) -> float:
    return now + INGEST_LEASE_SECONDS + file_bytes / INGEST_BYTES_PER_SECOND


def hold_ingest(engine: Engine, batch_id: str, file_bytes: int, now: float) -> None:
    """Mark this ingest as the batch's owner until its lease ends."""
    with engine.begin() as conn:
        conn.execute(
            update(BATCH)
            .where(BATCH.c.id == batch_id, BATCH.c.status == "validating")
            .values(ingest_lease_until=ingest_lease(file_bytes, now))
        )


class _NoLongerValidating(Exception):
    pass


def _store_items(
    conn: Any,
    batch_id: str,
    rows: Iterator[dict[str, Any]],
    chains: dict[str, list[str]],
    config: Config,
    now: float,
) -> int:
    """Insert the items and move the batch to in_progress in one transaction, or neither."""
    total = insert_items(conn, rows)
    aliases = {a for chain in chains.values() for a in chain}
    aliases |= {a for alias in aliases for a in config.context_window_fallbacks.get(alias, ())}
    vendor_batch = conn.execute(select(BATCH.c.vendor_batch).where(BATCH.c.id == batch_id)).scalar()
    batch_adapters = lane_adapters(config) if vendor_batch else ()
    prices = pin_prices([d for d in config.deployments if d.alias in aliases], None, batch_adapters)
    moved = conn.execute(
        update(BATCH)
        .where(BATCH.c.id == batch_id, BATCH.c.status == "validating")
        .values(
            status="in_progress",
            in_progress_at=int(now),
            total=total,
            price_table_json=json.dumps(prices.to_json()),
        )
    ).rowcount
    if not moved:
        raise _NoLongerValidating
    return total


ENQUEUE_PAGE = 10_000


def enqueue_batch(engine: Engine, config: Config, batch_id: str, enqueue: Enqueue) -> int:
    """Enqueue every queued, never-enqueued item of a batch, chunked per vendor, a page of ids
    at a time in input order: memory stays flat however long the batch is."""
    sent = 0
    for vendor in config.vendors:
        after = -1
        while True:
            with reading(engine) as conn:
                page = conn.execute(
                    select(ITEM.c.id, ITEM.c.idx, ITEM.c.enqueued_at)
                    .where(
                        ITEM.c.batch_id == batch_id,
                        ITEM.c.vendor == vendor,
                        ITEM.c.state == "queued",
                        ITEM.c.idx > after,
                    )
                    .order_by(ITEM.c.idx)
                    .limit(ENQUEUE_PAGE)
                ).all()
            if not page:
                break
            after = page[-1].idx
            ids = [r.id for r in page if r.enqueued_at is None]
            if ids:
                sent += enqueue(batch_id, vendor, ids)
                mark_enqueued(engine, ids)
    return sent


def mark_enqueued(engine: Engine, ids: list[int]) -> None:
    now = time.time()
    with engine.begin() as conn:
        for i in range(0, len(ids), 5000):
            conn.execute(
                update(ITEM).where(ITEM.c.id.in_(ids[i : i + 5000])).values(enqueued_at=now)
            )
