"""Leases on items stay alive while their calls are in flight."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from sqlalchemy import select

from batchgate.execution.runtime import Runtime
from batchgate.simulator.server import RunningSimulator
from batchgate.store.items import ITEM, claim
from tests.integration.chunk_harness import new_batch

pytestmark = pytest.mark.storage


def test_a_lease_renewal_is_not_queued_behind_a_write_that_waits(
    rt: Runtime, sim: RunningSimulator
) -> None:
    batch_id, ids = new_batch(rt, ["a", "b", "c"])
    assert len(claim(rt.engine, ids, "w", time.time(), 5)) == 3
    gate = threading.Event()

    async def scenario() -> bool:
        # The database thread is busy, as when a claim waits out SQLite's busy timeout.
        waiting = asyncio.ensure_future(rt.db(gate.wait, 30))
        await asyncio.wait_for(rt.renew("w", ids, time.time() + 600), 10)
        renewed_meanwhile = not gate.is_set()
        gate.set()
        await waiting
        return renewed_meanwhile

    try:
        assert rt.run(scenario())
    finally:
        gate.set()
        rt.close()
    with rt.engine.connect() as conn:
        until = conn.execute(select(ITEM.c.lease_until).where(ITEM.c.batch_id == batch_id))
        assert all(u > time.time() + 500 for (u,) in until)
    rt.engine.dispose()
