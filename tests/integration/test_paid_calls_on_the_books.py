"""Every paid vendor call ends up on the books (an attempt row, its item's outcome), whatever
fails around it: any database error on a write, Redis failing before or after the call, a bug
between the response and its record. Faults come through `batchgate.execution.faults`, the one
seam the execution core exposes; the rest is real (simulator over HTTP, Valkey, database)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError

import batchgate.execution.recorder as recorder
import batchgate.execution.runner as runner
from batchgate.execution import faults
from batchgate.execution.recorder import Recorder
from batchgate.execution.runtime import Runtime
from batchgate.filestore import FileStore
from batchgate.money import usd_str
from batchgate.names import budget_key
from batchgate.pipeline.finalize import try_finalize
from batchgate.simulator.server import RunningSimulator
from batchgate.store.db import make_engine
from batchgate.store.items import ATTEMPT, BATCH, ITEM, AttemptRow
from tests.integration.chunk_harness import LIMIT, make_runtime, new_batch, run_chunk
from tests.integration.valkey_fixture import valkey_url  # noqa: F401  (a pytest fixture)

pytestmark = pytest.mark.storage


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(recorder, "RETRY_SECONDS", 0.01)
    yield
    faults.install(None)


def _fail_first(point: str, n: int, make: Callable[[], Exception]) -> dict[str, int]:
    """Install an injector that raises `make()` the first `n` times `point` fires."""
    fired = {"n": 0}

    def inject(at: str, key: str) -> None:
        if at == point and fired["n"] < n:
            fired["n"] += 1
            raise make()

    faults.install(inject)
    return fired


def _books(database_url: str, batch_id: str) -> tuple[dict[str, int], int, int]:
    """(item states, attempt rows, sum of attempt costs) of one batch."""
    engine = make_engine(database_url)
    with engine.connect() as conn:
        states = conn.execute(
            select(ITEM.c.state, func.count()).where(ITEM.c.batch_id == batch_id).group_by("state")
        ).all()
        attempts, cost = conn.execute(
            select(func.count(), func.coalesce(func.sum(ATTEMPT.c.cost_pusd), 0)).where(
                ATTEMPT.c.batch_id == batch_id
            )
        ).one()
    engine.dispose()
    return dict(states), attempts, int(cost)


def _budget(rt: Runtime, batch_id: str) -> dict[str, int]:
    client = redis.Redis.from_url(rt.settings.redis_url or "")
    raw = client.hgetall(budget_key(batch_id))
    client.close()
    return {k.decode(): int(v) for k, v in raw.items()}


@pytest.mark.parametrize(
    "error",
    [InterfaceError, DataError, IntegrityError, DBAPIError],
    ids=lambda e: e.__name__,
)
def test_a_flush_failing_with_any_dbapi_error_keeps_its_outcomes(
    rt: Runtime, sim: RunningSimulator, database_url: str, error: type[DBAPIError]
) -> None:
    fired = _fail_first("recorder.flush", 2, lambda: error("UPDATE item", {}, Exception("boom")))
    batch_id, ids = new_batch(rt, [f"hello {i}" for i in range(20)])
    report = run_chunk(rt, batch_id, ids[:LIMIT])
    states, attempts, _ = _books(database_url, batch_id)
    assert fired["n"] == 2
    assert report.succeeded == 20 and states == {"succeeded": 20}
    assert attempts == sim.stats()["total"]["calls"] == 20  # each paid call on the books once


def test_a_refill_claim_failing_with_any_error_leaves_no_item_running(
    rt: Runtime, sim: RunningSimulator, database_url: str
) -> None:
    fired = _fail_first("runner.claim", 1, lambda: InterfaceError("UPDATE", {}, Exception("x")))
    batch_id, ids = new_batch(rt, [f"hello {i}" for i in range(24)])
    report = run_chunk(rt, batch_id, ids[:LIMIT])
    states, attempts, _ = _books(database_url, batch_id)
    assert fired["n"] == 1
    # Every item the chunk started ended and was written; none is left running (unawaited).
    # What the failed claim left queued is the reconciler's to re-enqueue.
    assert report.succeeded >= LIMIT and states.get("running", 0) == 0
    left = 24 - report.succeeded
    assert states == {"succeeded": report.succeeded, **({"queued": left} if left else {})}
    assert attempts == sim.stats()["total"]["calls"] == report.succeeded


def test_redis_failing_right_after_paid_calls_keeps_them_and_their_outcome(
    rt: Runtime, sim: RunningSimulator, database_url: str
) -> None:
    fired = _fail_first("runner.after_call", 4, lambda: RedisConnectionError("gone"))
    batch_id, ids = new_batch(rt, [f"hello {i}" for i in range(12)], max_cost_usd=Decimal(5))
    report = run_chunk(rt, batch_id, ids[:LIMIT])
    states, attempts, cost = _books(database_url, batch_id)
    assert fired["n"] == 4
    assert report.succeeded == 12 and states == {"succeeded": 12}  # none re-queued, none re-paid
    assert attempts == sim.stats()["total"]["calls"] == 12
    assert _budget(rt, batch_id) == {"spent": cost, "reserved": 0}


def test_a_budget_settle_redis_refuses_is_sent_later(
    rt: Runtime, sim: RunningSimulator, database_url: str
) -> None:
    real_settle = rt.budgets._settle
    refused = {"n": 0}

    async def refuse_twice(**kw: Any) -> Any:
        if refused["n"] < 2:
            refused["n"] += 1
            raise RedisConnectionError("gone")
        return await real_settle(**kw)

    rt.budgets._settle = refuse_twice  # Redis itself failing, at the budget's one call
    batch_id, ids = new_batch(rt, [f"hello {i}" for i in range(12)], max_cost_usd=Decimal(5))
    report = run_chunk(rt, batch_id, ids[:LIMIT])
    states, attempts, cost = _books(database_url, batch_id)
    assert refused["n"] == 2
    assert report.succeeded == 12 and states == {"succeeded": 12}
    assert attempts == sim.stats()["total"]["calls"] == 12
    assert rt.budgets.owed == 0
    assert _budget(rt, batch_id) == {"spent": cost, "reserved": 0}


def test_a_failure_between_reserve_and_call_releases_the_reservation(
    rt: Runtime, sim: RunningSimulator, database_url: str
) -> None:
    fired = _fail_first("runner.before_call", 3, lambda: RedisConnectionError("gone"))
    batch_id, ids = new_batch(rt, [f"hello {i}" for i in range(12)], max_cost_usd=Decimal(5))
    run_chunk(rt, batch_id, ids[:LIMIT])
    states, attempts, cost = _books(database_url, batch_id)
    assert fired["n"] == 3
    # The three lines went back to the queue unpaid (the chunk's refill took them again);
    # nothing of their first tries stays reserved, so the batch's budget is not held back.
    assert states == {"succeeded": 12}
    assert attempts == sim.stats()["total"]["calls"] == 12
    assert _budget(rt, batch_id) == {"spent": cost, "reserved": 0}


def test_a_bug_after_a_paid_completion_keeps_the_completion(
    rt: Runtime,
    sim: RunningSimulator,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_pricing(*args: Any) -> Decimal:
        raise ZeroDivisionError("a pricing bug")

    monkeypatch.setattr(runner, "cost_of", broken_pricing)
    batch_id, ids = new_batch(rt, [f"hello {i}" for i in range(6)])
    report = run_chunk(rt, batch_id, ids[:LIMIT])
    states, attempts, _ = _books(database_url, batch_id)
    assert report.succeeded == 6 and states == {"succeeded": 6}  # not `internal_error`
    assert attempts == sim.stats()["total"]["calls"] == 6


def test_a_duplicate_attempt_landing_after_the_batch_ended_reaches_its_totals(
    tmp_path: Path,
    rt: Runtime,
    sim: RunningSimulator,
    database_url: str,
    valkey_url: str,  # noqa: F811
) -> None:
    batch_id, ids = new_batch(rt, [f"hello {i}" for i in range(4)])
    run_chunk(rt, batch_id, ids)
    engine = make_engine(database_url)
    try_finalize(engine, FileStore(tmp_path / "files"), batch_id)  # unless the chunk's end did
    with engine.connect() as conn:
        status = conn.execute(select(BATCH.c.status).where(BATCH.c.id == batch_id)).scalar_one()
    assert status == "completed"
    before = _summary(engine, batch_id)
    assert before["duplicate_calls"] == 0
    # A worker paused past the batch's end (its lease long gone) writes its call now.
    late = make_runtime(tmp_path, database_url, valkey_url, sim)
    rec = Recorder(late, "paused-worker", lambda *a: None, set())
    rec.attempt(
        AttemptRow(
            item_id=ids[0],
            batch_id=batch_id,
            alias="m",
            deployment_id="m#0",
            vendor="openai",
            started_at=0.0,
            finished_at=1.0,
            status="ok",
            cost_pusd=1_000_000,
        )
    )
    assert late.run(rec.flush())
    late.close()
    after = _summary(engine, batch_id)
    _, attempts, total = _books(database_url, batch_id)
    engine.dispose()
    assert after["duplicate_calls"] == 1 and after["duplicate_spend_usd"] == usd_str(1_000_000)
    assert after["cost_pusd"] == total and after["attempt_rows"] == attempts == 5


def _summary(engine: Any, batch_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        raw = conn.execute(select(BATCH.c.summary_json).where(BATCH.c.id == batch_id)).scalar_one()
    return json.loads(raw)


def test_a_reservation_its_worker_never_settles_lapses_after_the_calls_deadline(
    valkey_url: str,  # noqa: F811
) -> None:
    import asyncio

    import redis.asyncio as aioredis

    from batchgate.routing.budget import Budgets

    async def scenario() -> tuple[bool, dict[str, int], dict[str, int]]:
        client = aioredis.Redis.from_url(valkey_url)
        budgets = Budgets(client)

        async def nothing_spent() -> int:
            return 0

        # A worker reserves most of the cap, then is killed mid-call: it never settles.
        assert await budgets.reserve("b-lapse", 100, 80, nothing_spent, lapse_seconds=0.3)
        refused = await budgets.reserve("b-lapse", 100, 30, nothing_spent, lapse_seconds=5)
        await client.hdel(budget_key("b-lapse"), "stopped")  # as if the cap had not been hit
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # past the dead call's deadline the cap has room again
            rid = await budgets.reserve("b-lapse", 100, 30, nothing_spent, lapse_seconds=5)
            if rid or asyncio.get_running_loop().time() > deadline:
                break
            await client.hdel(budget_key("b-lapse"), "stopped")
            await asyncio.sleep(0.05)
        during = {k.decode(): v for k, v in (await client.hgetall(budget_key("b-lapse"))).items()}
        assert rid is not None
        await budgets.settle("b-lapse", rid, 25)
        after = await client.hgetall(budget_key("b-lapse"))
        await client.delete(budget_key("b-lapse"), budget_key("b-lapse") + ":reservations")
        await client.aclose()
        return (
            refused is None,
            {k: int(v) for k, v in during.items() if k in ("reserved",)},
            {k.decode(): int(v) for k, v in after.items()},
        )

    refused, during, after = asyncio.run(scenario())
    assert refused  # while the dead call's reservation stood, the cap had no room
    assert during == {"reserved": 30}  # the lapsed 80 is gone, only the live 30 is held
    assert after == {"spent": 25, "reserved": 0}
