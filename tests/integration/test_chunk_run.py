"""One worker's `ChunkRun` in this process against real parts: the simulator over HTTP, a real
Valkey for the slots, a real database. Checks how a chunk keeps the vendor busy: it claims the
rest of its batch as items finish, and items waiting out a retry-after do not hold that up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batchgate.execution.runner import ChunkRun
from batchgate.execution.runtime import Runtime
from batchgate.simulator.server import RunningSimulator
from batchgate.store.db import make_engine
from tests.integration.chunk_harness import LIMIT, make_runtime, new_batch, run_chunk
from tests.integration.valkey_fixture import valkey_url  # noqa: F401  (a pytest fixture)

pytestmark = pytest.mark.storage


def test_a_chunk_claims_the_rest_of_its_batch_as_items_finish(
    rt: Runtime,
    sim: RunningSimulator,
) -> None:
    batch_id, ids = new_batch(rt, [f"hello {i}" for i in range(40)])
    report = run_chunk(rt, batch_id, ids[:LIMIT])  # the message carried the first chunk only
    assert report.claimed == 40 and report.succeeded == 40
    assert sim.stats()["total"]["calls"] == 40


def test_a_long_refilling_chunk_keeps_nothing_per_finished_item(
    rt: Runtime,
    sim: RunningSimulator,
) -> None:
    # A task refills for minutes and may run hundreds of thousands of items: what it keeps
    # about each must go when the item's own task ends (a pool process peaked at 165 MB).
    batch_id, ids = new_batch(rt, [f"hello {i}" for i in range(40)])
    run = ChunkRun(rt, "openai", lambda *a: None)
    try:
        report = rt.run(run.run(batch_id, ids[:LIMIT]))
    finally:
        rt.close()
    assert report.succeeded == 40
    assert run._ended == set() and run._tasks == set() and run.in_flight == set()


def test_items_waiting_out_a_retry_after_do_not_hold_up_the_rest(
    rt: Runtime,
    sim: RunningSimulator,
) -> None:
    limited = [f"slow down {i} #sim:fail=429:first=1:retry-after=1" for i in range(LIMIT)]
    batch_id, ids = new_batch(rt, [*limited, *(f"hello {i}" for i in range(32))])
    report = run_chunk(rt, batch_id, ids[:LIMIT])  # the whole chunk is told to wait a second
    assert report.succeeded == 40

    ledger = sim.ledger()
    first_429 = min(e["t_end"] for e in ledger if e["status"] == 429)
    while_waiting = [e for e in ledger if e["status"] == 200 and e["t_start"] < first_429 + 0.9]
    # The chunk claimed and ran the other 32 lines while its first 8 waited out the second.
    assert len(while_waiting) == 32
    assert sum(1 for e in ledger if e["status"] == 429) == LIMIT


def test_a_model_with_one_deployment_stays_in_rotation_through_failures(
    rt: Runtime,
    sim: RunningSimulator,
) -> None:
    # Every line fails its first call with a 500. Cooling the model's only deployment down
    # after a few of them would end the remaining lines as failed; LiteLLM's default retries.
    batch_id, ids = new_batch(rt, [f"flaky {i} #sim:fail=500:first=1" for i in range(12)])
    report = run_chunk(rt, batch_id, ids[:LIMIT])
    assert report.succeeded == 12 and report.failed == 0
    assert sum(1 for e in sim.ledger() if e["status"] == 500) == 12


def test_outcomes_the_database_refuses_for_a_while_are_written_later(
    tmp_path: Path,
    database_url: str,
    valkey_url: str,  # noqa: F811
    sim: RunningSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As when another process holds SQLite's write lock past the busy timeout: the first
    # writes of outcomes fail; the recorder keeps them and writes them once it can.
    import sqlite3

    from sqlalchemy import func, select
    from sqlalchemy.exc import OperationalError

    import batchgate.execution.recorder as recorder
    from batchgate.store.items import ATTEMPT, ITEM

    refusals = {"left": 3}
    real_apply = recorder.apply

    def busy_then_apply(*args: Any) -> Any:
        if refusals["left"]:
            refusals["left"] -= 1
            locked = sqlite3.OperationalError("database is locked")
            raise OperationalError("UPDATE item", {}, locked)
        return real_apply(*args)

    monkeypatch.setattr(recorder, "apply", busy_then_apply)
    monkeypatch.setattr(recorder, "RETRY_SECONDS", 0.01)
    rt = make_runtime(tmp_path, database_url, valkey_url, sim)
    engine = make_engine(database_url)
    batch_id, ids = new_batch(rt, [f"hello {i}" for i in range(20)])
    report = run_chunk(rt, batch_id, ids[:LIMIT])
    assert refusals["left"] == 0 and report.succeeded == 20
    with engine.connect() as conn:
        states = conn.execute(
            select(ITEM.c.state, func.count()).where(ITEM.c.batch_id == batch_id).group_by("state")
        ).all()
        attempts = conn.execute(
            select(func.count()).select_from(ATTEMPT).where(ATTEMPT.c.batch_id == batch_id)
        ).scalar_one()
    engine.dispose()
    assert dict(states) == {"succeeded": 20}
    assert attempts == 20  # each written once, none lost, none doubled
