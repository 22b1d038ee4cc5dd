"""Create a batch from an uploaded file: validate it whole, store one item per line, enqueue.

Nothing is called before the whole file has validated; a bad file ends as a `failed` batch with
line-numbered errors and no items.
"""

from __future__ import annotations

import json
import logging
import time
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Engine

from batchgate.config import VENDOR_BATCH_LIMITS, Config
from batchgate.filestore import FileStore, new_id
from batchgate.pipeline.finalize import try_finalize
from batchgate.pricing import pin_prices
from batchgate.settings import Settings
from batchgate.store.batches import batch_and_file, batch_status, insert_batch
from batchgate.store.enqueued import mark_enqueued
from batchgate.store.ingest import (
    INGEST_GROUP,
    clear_group,
    conclude,
    fail_ingest,
    finish_ingest,
    hold,
    refresh_item_statistics,
    store_group,
)
from batchgate.store.models import Batch
from batchgate.validation import FilePass, Limits, LineError, RequestLine

log = logging.getLogger(__name__)

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
    insert_batch(engine, batch)
    return batch


# The ingest's owner lease, renewed by every stored group: long enough to read the rest of the
# file at a slow pace; when it lapses (the API died mid-ingest) the reconciler takes the ingest
# over at once instead of waiting.
INGEST_LEASE_SECONDS = 30.0
INGEST_BYTES_PER_SECOND = 1_000_000  # measured 8.7 MB/s (benchmarks/RESULTS.md): 8x margin


def lane_adapters(config: Config) -> list[str]:
    return [a for a in VENDOR_BATCH_LIMITS if config.vendor_batch.supports(a)]


def vendor_batch_vendors(config: Config) -> set[str]:
    """Vendors (queues) whose deployments have a batch API the lane can submit to."""
    return {d.vendor for d in config.deployments if config.vendor_batch.supports(d.adapter)}


def ingest_lease(file_bytes: int, now: float) -> float:
    return now + INGEST_LEASE_SECONDS + max(file_bytes, 0) / INGEST_BYTES_PER_SECOND


def ingest(
    engine: Engine,
    settings: Settings,
    config: Config,
    files: FileStore,
    batch_id: str,
    enqueue: Enqueue,
    attempt: int | None = None,
) -> str:
    """Validate and store the items in one pass, then enqueue; returns the batch's new status.

    `attempt`: the ingest attempt the caller was given (the creating API: the batch's first);
    None: whichever attempt holds the batch now (the reconciler, right after taking it over).

    The items are stored in committed groups as the file is read (no write transaction lasts
    longer than a group) while the batch stays `validating`, where nothing runs them. A bad
    line, a cancel or an expiry on the way removes them again before the batch ends.
    """
    batch, file = batch_and_file(engine, batch_id)
    if batch is None:
        return "missing"
    if attempt is None:
        attempt = batch.ingest_attempts  # our fencing token: a takeover increments it
    elif attempt != batch.ingest_attempts:
        return batch.status  # taken over while this ingest waited to start: not ours
    if batch.status != "validating":
        # Cancelled or expired before this ingest began: end what it owns (nothing, or a dead
        # attempt's items the reconciler handed over).
        return clear_abandoned(engine, files, batch_id, attempt)
    size = file.bytes if file is not None else 0
    if not hold(engine, batch_id, attempt, ingest_lease(size, time.time())):
        return clear_abandoned(engine, files, batch_id, attempt)
    # A takeover redoes the ingest from the start: first remove what the dead attempt stored.
    if not _clear(engine, batch_id, attempt):
        return clear_abandoned(engine, files, batch_id, attempt)
    if file is None:
        return _give_up(engine, files, batch_id, attempt, "file_not_found", "input file not found")
    fallbacks = json.loads(batch.fallbacks_json)
    named = [batch.model_override, *(fallbacks or ())]
    unknown = [a for a in named if a and not config.deployments_for(a)]
    if unknown:
        msg = f"unknown model {unknown[0]!r}"
        return _give_up(engine, files, batch_id, attempt, "unknown_model", msg)

    # Lines a vendor batch API can serve wait for the vendor batch lane, never for a worker:
    # stored so, so that no reconciler round can enqueue them in between.
    lane_vendors = vendor_batch_vendors(config) if batch.vendor_batch else set()
    rows = _Rows(batch_id, batch.model_override, fallbacks, config, lane_vendors)
    with files.open(file.path) as fp:
        checked = FilePass(
            fp,
            endpoint=batch.endpoint,
            known_models=None if batch.model_override else config.aliases,
            default_model=batch.model_override,
            limits=limits_from(settings),
        )
        group: list[tuple[Any, ...]] = []
        for line in checked:
            group.append(rows.row(line))
            if len(group) >= INGEST_GROUP:
                # The lease covers the rest of the file at a slow pace: also the part read
                # without storing anything, after a bad line.
                lease = ingest_lease(size - checked.bytes_read, time.time())
                ids = store_group(engine, batch_id, attempt, lease, group)
                if ids is None:
                    return clear_abandoned(engine, files, batch_id, attempt)
                rows.stored(ids, group)
                group = []
    report = checked.report
    assert report is not None
    if not report.ok:
        if _clear(engine, batch_id, attempt) and _fail(engine, batch_id, attempt, report.errors):
            return "failed"
        return clear_abandoned(engine, files, batch_id, attempt)
    ids = _finish(engine, batch_id, attempt, group, rows, config, batch.vendor_batch)
    if ids is None:
        return clear_abandoned(engine, files, batch_id, attempt)
    rows.stored(ids, group)
    # Before the messages go: the workers' first claims are planned on the new statistics.
    refresh_item_statistics(engine, rows.total)
    enqueue_batch(engine, batch_id, enqueue, rows.queued)
    return "in_progress"


class IdRuns:
    """Increasing item ids as runs of consecutive ids: a batch's ids mostly are one run (each
    group's ids follow the last), so 1M ids take bytes instead of 8 MB and more."""

    def __init__(self) -> None:
        self._starts = array("q")
        self._counts = array("q")

    def add(self, item_id: int) -> None:
        starts, counts = self._starts, self._counts
        if starts and starts[-1] + counts[-1] == item_id:
            counts[-1] += 1
        else:
            starts.append(item_id)
            counts.append(1)

    def pages(self, size: int) -> Iterator[list[int]]:
        """The ids in order, `size` at a time."""
        page: list[int] = []
        for start, count in zip(self._starts, self._counts, strict=True):
            at, end = start, start + count
            while at < end:
                take = min(end - at, size - len(page))
                page.extend(range(at, at + take))
                at += take
                if len(page) == size:
                    yield page
                    page = []
        if page:
            yield page


class _Rows:
    """Item rows (tuples in `ITEM_COLUMNS` order) from a file's request lines, and the ids of
    those stored `queued`, per vendor in input order."""

    def __init__(
        self,
        batch_id: str,
        model_override: str | None,
        fallbacks: list[str] | None,
        config: Config,
        lane_vendors: set[str],
    ) -> None:
        self.batch_id = batch_id
        self.override = model_override
        self.fallbacks = fallbacks
        self.config = config
        self.lane_vendors = lane_vendors
        self.total = 0
        self.chains: dict[str, list[str]] = {}
        # Per alias, worked out once rather than once per line: the chain's JSON, and the
        # vendor when the alias has one (None: it spreads its lines over several by index).
        self._alias: dict[str, tuple[str, str | None]] = {}
        self.queued: dict[str, IdRuns] = {}

    def stored(self, ids: Sequence[int], group: list[tuple[Any, ...]]) -> None:
        """Note the ids the store gave a group's rows."""
        queued = self.queued
        for item_id, row in zip(ids, group, strict=True):
            if row[7] == "queued":
                vendor = row[5]
                if vendor not in queued:
                    queued[vendor] = IdRuns()
                queued[vendor].add(item_id)

    def row(self, line: RequestLine) -> tuple[Any, ...]:
        body = line.body
        if self.override:
            body = {**body, "model": self.override}
        alias = body["model"]
        known = self._alias.get(alias)
        if known is None:
            chain = self.chains[alias] = self.config.chain(alias, self.fallbacks)
            vendors = self.config.vendors_for(alias)
            only = vendors[0] if len(vendors) == 1 else None
            known = self._alias[alias] = (json.dumps(chain), only)
        chain_json, vendor = known
        if vendor is None:
            vendor = self.config.vendor_for(alias, line.index)
        self.total += 1
        return (
            self.batch_id,
            line.index,
            line.custom_id,
            json.dumps(body, ensure_ascii=False) if self.override else line.body_json(),
            alias,
            vendor,
            chain_json,
            "vendor" if vendor in self.lane_vendors else "queued",
        )


def _finish(
    engine: Engine,
    batch_id: str,
    attempt: int,
    group: list[tuple[Any, ...]],
    rows: _Rows,
    config: Config,
    vendor_batch: bool,
) -> Sequence[int] | None:
    """Store the last group and move the batch to in_progress with its prices pinned, in one
    transaction, or neither (None: the batch is no longer ours to fill); the group's ids."""
    aliases = {a for chain in rows.chains.values() for a in chain}
    aliases |= {a for alias in aliases for a in config.context_window_fallbacks.get(alias, ())}
    batch_adapters = lane_adapters(config) if vendor_batch else ()
    prices = pin_prices([d for d in config.deployments if d.alias in aliases], None, batch_adapters)
    now = time.time()
    return finish_ingest(
        engine,
        batch_id,
        attempt,
        now + INGEST_LEASE_SECONDS,
        group,
        now=now,
        total=rows.total,
        price_table_json=json.dumps(prices.to_json()),
    )


def _fail(engine: Engine, batch_id: str, attempt: int, errors: list[LineError]) -> bool:
    """End a batch whose items were cleared as `failed`; False if it was no longer ours."""
    data = [{"code": e.code, "message": e.message, "line": e.line, "param": None} for e in errors]
    errors_json = json.dumps({"object": "list", "data": data})
    return fail_ingest(engine, batch_id, attempt, errors_json, time.time())


def _give_up(
    engine: Engine, files: FileStore, batch_id: str, attempt: int, code: str, message: str
) -> str:
    if _fail(engine, batch_id, attempt, [LineError(None, code, message)]):
        return "failed"
    return clear_abandoned(engine, files, batch_id, attempt)


def _clear(engine: Engine, batch_id: str, attempt: int) -> bool:
    """Delete the batch's items a group at a time; False once the ingest is no longer ours."""
    while True:
        n = clear_group(engine, batch_id, attempt, time.time() + INGEST_LEASE_SECONDS)
        if n is None:
            return False
        if n == 0:
            return True


def clear_abandoned(engine: Engine, files: FileStore, batch_id: str, attempt: int) -> str:
    """End an ingest whose batch was cancelled, expired or failed before it finished: remove its
    items, conclude it, and finalize the batch if cancelled (with no lines). For the owner
    `attempt` only: nothing happens if another attempt holds the batch (a takeover carries on)
    or the ingest already ended. Returns the batch's status."""
    if _clear(engine, batch_id, attempt) and conclude(engine, batch_id, attempt):
        try_finalize(engine, files, batch_id)  # finalizes a `cancelling` batch only
    return batch_status(engine, batch_id) or "missing"


ENQUEUE_PAGE = 10_000
ENQUEUE_PAUSE = 0.02


def enqueue_batch(
    engine: Engine, batch_id: str, enqueue: Enqueue, stored: Mapping[str, IdRuns]
) -> int:
    """Send the items an ingest has just stored as `queued` (`stored`: their ids per vendor,
    none enqueued yet), chunked per vendor, a page of ids at a time in input order, marking
    each page enqueued once sent."""
    sent = 0
    for vendor, ids_stored in stored.items():
        for ids in ids_stored.pages(ENQUEUE_PAGE):
            sent += enqueue(batch_id, vendor, ids)
            mark_enqueued(engine, ids)
            if engine.dialect.name == "sqlite":
                # Back to back, the marks held SQLite's write lock ~all the time and another
                # batch's writer, asleep in its busy handler, waited up to 1 s (1M lines);
                # a pause as long as reading the page back took (before the ids were kept)
                # lets it in.
                time.sleep(ENQUEUE_PAUSE)
    return sent
