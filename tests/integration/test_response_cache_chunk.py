"""The response cache inside one worker's `ChunkRun`, against the simulator over HTTP and a real
database: a caching batch's answers are kept, a later caching batch is served from them without
a call and at cost 0, and the lookups are one query per claim, none for a batch that does not
cache."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

import batchgate.execution.cache as cache_mod
from batchgate.execution.runner import ChunkRun
from batchgate.execution.runtime import Runtime
from batchgate.pipeline.finalize import summarize
from batchgate.simulator.server import RunningSimulator
from batchgate.store.answers import full_result
from batchgate.store.cache import CACHE
from batchgate.store.db import reading
from batchgate.store.items import ITEM
from tests.integration.chunk_harness import LIMIT, new_batch

pytestmark = pytest.mark.storage


def _run(rt: Runtime, batch_id: str, ids: list[int]) -> Any:
    return rt.run(ChunkRun(rt, "openai", lambda *a: None).run(batch_id, ids))


def _items(rt: Runtime, batch_id: str) -> list[Any]:
    with reading(rt.engine) as conn:
        return conn.execute(
            select(ITEM).where(ITEM.c.batch_id == batch_id).order_by(ITEM.c.idx)
        ).all()


def _body(row: Any) -> Any:
    answer = full_result(row.result_json, row.response_body)
    return answer["body"] if answer else None


@pytest.fixture
def finds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many keys each cache lookup query asked for."""
    sizes: list[int] = []
    real = cache_mod.find

    def counting(engine: Any, keys: list[str], since: float) -> Any:
        sizes.append(len(keys))
        return real(engine, keys, since)

    monkeypatch.setattr(cache_mod, "find", counting)
    return sizes


def test_a_second_caching_batch_is_served_from_the_first_without_a_call(
    rt: Runtime, sim: RunningSimulator, finds: list[int]
) -> None:
    prompts = [f"question {i}" for i in range(20)]
    try:
        first, ids = new_batch(rt, prompts, cache=True)
        assert _run(rt, first, ids[:LIMIT]).succeeded == 20
        assert sim.stats()["total"]["calls"] == 20
        with reading(rt.engine) as conn:
            assert conn.execute(select(CACHE.c.tenant)).scalars().all() == ["t"] * 20

        second, ids2 = new_batch(rt, prompts, cache=True)
        report = _run(rt, second, ids2[:LIMIT])
    finally:
        rt.close()
    assert report.succeeded == 20
    assert sim.stats()["total"]["calls"] == 20  # not one more call
    before = {r.custom_id: _body(r) for r in _items(rt, first)}
    rows = _items(rt, second)
    assert all(r.cached and r.cost_pusd == 0 and r.attempts == 0 for r in rows)
    assert {r.custom_id: _body(r) for r in rows} == before
    summary = summarize(rt.engine, second)
    assert summary["cost_pusd"] == 0 and summary["cache_hits"] == 20
    # The saving is what the first batch paid: same usage, same pinned prices.
    assert summary["cache_saved_usd"] == summarize(rt.engine, first)["cost_usd"] != "0"
    # Batched: one query per claim (the first chunk, then refills), never one per line.
    assert len(finds) < 20 and sum(finds) == 40


def test_a_batch_that_does_not_cache_neither_looks_up_nor_is_served(
    rt: Runtime, sim: RunningSimulator, finds: list[int]
) -> None:
    prompts = [f"question {i}" for i in range(LIMIT)]
    try:
        first, ids = new_batch(rt, prompts, cache=True)
        assert _run(rt, first, ids).succeeded == LIMIT
        plain, ids2 = new_batch(rt, prompts, cache=False)
        assert _run(rt, plain, ids2).succeeded == LIMIT
    finally:
        rt.close()
    assert sim.stats()["total"]["calls"] == 2 * LIMIT
    assert finds == [LIMIT]  # the caching batch's one lookup; the other asked nothing
    assert not any(r.cached for r in _items(rt, plain))
