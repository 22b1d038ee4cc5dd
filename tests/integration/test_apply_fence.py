"""An outcome being written holds its item: a lease released meanwhile waits for it."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

import batchgate.store.items as items
from batchgate.execution.runtime import Runtime
from batchgate.pipeline.reconcile import release_expired_leases
from batchgate.simulator.server import RunningSimulator
from batchgate.store.items import ATTEMPT, ITEM, AttemptRow, ItemUpdate, apply, claim
from tests.integration.chunk_harness import new_batch

pytestmark = pytest.mark.storage


def test_a_lease_released_while_its_outcome_is_written_waits_for_it(
    rt: Runtime, sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reconciler releases a lapsed lease just as its holder writes the paid outcome (after
    # the holder saw the lease as its own, before its fenced UPDATE). Before the fix, on
    # PostgreSQL, the attempt row counted as the item's while the outcome and its cost were
    # dropped: the books said the line cost less than its calls.
    batch_id, [item_id] = new_batch(rt, ["a"])
    now = time.time()
    [claimed] = claim(rt.engine, [item_id], "w", now, 1)
    released: list[int] = []
    real_next_seqs = items.next_seqs

    def release_meanwhile(conn: Any, batch_ids: Any) -> dict[str, int]:
        racer = threading.Thread(
            target=lambda: released.append(release_expired_leases(rt.engine, now + 60))
        )
        racer.start()
        racer.join(timeout=3)  # it waits for the row (PostgreSQL) or the write lock (SQLite)
        monkeypatch.setattr(items, "next_seqs", real_next_seqs)
        threads.append(racer)
        return real_next_seqs(conn, batch_ids)

    threads: list[threading.Thread] = []
    monkeypatch.setattr(items, "next_seqs", release_meanwhile)
    attempt = AttemptRow(
        item_id=item_id, batch_id=batch_id, alias="m", deployment_id="d", vendor="openai",
        started_at=now, finished_at=now, status="ok", cost_pusd=1234,
    )  # fmt: skip
    update = ItemUpdate.of(claimed, "succeeded", result={"body": {"x": 1}}, finished_at=now)
    applied = apply(rt.engine, "w", [update], [attempt])
    for racer in threads:
        racer.join()
    assert not applied.stale
    assert released == [0]  # the lease had ended with the outcome: nothing left to release
    with rt.engine.connect() as conn:
        row = conn.execute(select(ITEM.c.state, ITEM.c.cost_pusd).where(ITEM.c.id == item_id)).one()
        dup = conn.execute(select(ATTEMPT.c.duplicate).where(ATTEMPT.c.item_id == item_id)).all()
    assert (row.state, row.cost_pusd) == ("succeeded", 1234)
    assert dup == [(False,)]
    rt.close()
