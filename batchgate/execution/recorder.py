"""Buffered, grouped writes of outcomes and attempts: one transaction per flush, not per item.

Items finish at different times; the recorder collects what finished in the last few tens of
milliseconds and applies it in one `store.items.apply` call, fenced by the chunk's lease owner.
Re-routed items are enqueued on their new vendor's queue only after their row is committed.

A write that fails, for any reason (SQLite busy past its timeout while another process holds
the write lock, a dropped PostgreSQL connection, any other DBAPI error), is kept and tried
again: dropping it would leave paid calls unrecorded and their items leased until the
reconciler re-runs them, paying twice with the first spend never on the books. The loop itself
never ends on an error, so a later flush is never lost with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable

from batchgate.execution import faults
from batchgate.execution.runtime import Runtime
from batchgate.pipeline.finalize import refresh_summary
from batchgate.store.cache import CacheRow
from batchgate.store.items import AttemptRow, ItemUpdate, apply

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.025
FLUSH_SIZE = 256
RETRY_SECONDS = 1.0  # between attempts at a write the database refused
GIVE_UP_SECONDS = 600.0  # closing: how long to keep trying before the chunk fails


class Recorder:
    def __init__(
        self,
        rt: Runtime,
        owner: str,
        enqueue: Callable[[str, str, list[int]], None],
        leased: set[int],
    ) -> None:
        self.rt = rt
        self.owner = owner
        self._leased = leased  # the chunk's leases: an outcome written releases its item's
        self._enqueue = enqueue
        self._updates: list[ItemUpdate] = []
        self._attempts: list[AttemptRow] = []
        self._cached: list[CacheRow] = []  # answers for the response cache
        self._reroutes: dict[tuple[str, str], list[int]] = defaultdict(list)
        self._batch_of: dict[int, str] = {}
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self.stale: set[int] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def attempt(self, row: AttemptRow) -> None:
        self._attempts.append(row)

    def cache(self, row: CacheRow) -> None:
        self._cached.append(row)

    def finish(self, update: ItemUpdate, batch_id: str, reroute: bool = False) -> None:
        self._updates.append(update)
        if reroute:
            self._batch_of[update.id] = batch_id
        if len(self._updates) + len(self._attempts) >= FLUSH_SIZE:
            self._wake.set()

    async def _loop(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(RETRY_SECONDS)

    async def flush(self) -> bool:
        """Apply what has finished; False if the write failed (kept for the next flush)."""
        if not self._updates and not self._attempts:
            return True
        updates, attempts, cached = self._updates, self._attempts, self._cached
        self._updates, self._attempts, self._cached = [], [], []
        try:
            faults.fire("recorder.flush")
            applied = await self.rt.db(apply, self.rt.engine, self.owner, updates, attempts, cached)
        except Exception as exc:  # any failure: the rows are kept (see above)
            log.warning(
                "recording %d outcomes and %d attempts failed, will retry: %s: %s",
                len(updates),
                len(attempts),
                type(exc).__name__,
                exc,
            )
            self._updates[:0] = updates
            self._attempts[:0] = attempts
            self._cached[:0] = cached
            return False
        self.stale |= applied.stale
        late = {a.batch_id for a in attempts if a.item_id in applied.stale}
        for batch_id in late:
            # Duplicates: if their batch is summarised already, its totals must count them.
            try:
                await self.rt.db(refresh_summary, self.rt.engine, batch_id)
            except Exception as exc:  # the rows are committed; the next late row retries
                log.warning("refreshing the totals of %s failed: %s", batch_id, exc)
        self._leased.difference_update(u.id for u in updates)
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for u in updates:
            batch_id = self._batch_of.pop(u.id, None)
            if batch_id is not None and u.id not in applied.stale:
                groups[(batch_id, u.vendor)].append(u.id)
        for (batch_id, vendor), ids in groups.items():
            # A failed send is not lost: the reconciler re-enqueues queued items nobody took.
            try:
                await self.rt.db(self._enqueue, batch_id, vendor, ids)
            except Exception as exc:  # the rows are committed already
                log.warning("enqueueing %d re-routed items failed: %s", len(ids), exc)
        return True

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
        give_up = time.monotonic() + GIVE_UP_SECONDS
        while not await self.flush():
            if time.monotonic() > give_up:
                raise RuntimeError("the database refused this chunk's outcomes for 10 minutes")
            await asyncio.sleep(RETRY_SECONDS)
