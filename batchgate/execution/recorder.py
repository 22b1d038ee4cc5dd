"""Buffered, grouped writes of outcomes and attempts: one transaction per flush, not per item.

Items finish at different times; the recorder collects what finished in the last few tens of
milliseconds and applies it in one `store.items.apply` call, fenced by the chunk's lease owner.
Re-routed items are enqueued on their new vendor's queue only after their row is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable

from batchgate.execution.runtime import Runtime
from batchgate.store.items import AttemptRow, ItemUpdate, apply

FLUSH_SECONDS = 0.025
FLUSH_SIZE = 256


class Recorder:
    def __init__(
        self,
        rt: Runtime,
        owner: str,
        enqueue: Callable[[str, str, list[int]], None],
    ) -> None:
        self.rt = rt
        self.owner = owner
        self._enqueue = enqueue
        self._updates: list[ItemUpdate] = []
        self._attempts: list[AttemptRow] = []
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
            await self.flush()

    async def flush(self) -> None:
        if not self._updates and not self._attempts:
            return
        updates, attempts = self._updates, self._attempts
        self._updates, self._attempts = [], []
        applied = await self.rt.db(apply, self.rt.engine, self.owner, updates, attempts)
        self.stale |= applied.stale
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for u in updates:
            batch_id = self._batch_of.pop(u.id, None)
            if batch_id is not None and u.id not in applied.stale:
                groups[(batch_id, u.vendor)].append(u.id)
        for (batch_id, vendor), ids in groups.items():
            # A failed send is not lost: the reconciler re-enqueues queued items nobody took.
            await self.rt.db(self._enqueue, batch_id, vendor, ids)

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()
