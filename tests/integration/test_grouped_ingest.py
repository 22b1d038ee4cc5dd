"""Ingest in committed groups (issue 19) on a real database: each group is its own short write
transaction, nothing runs the items of a batch still validating, and a bad line, a cancel or an
API that died mid-ingest never leaves partial items behind."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import event, func, select

import batchgate.pipeline.ingest as ingest_mod
import batchgate.store.ingest as store_ingest
from batchgate.config import parse_config
from batchgate.filestore import FileStore
from batchgate.pipeline.finalize import try_finalize
from batchgate.pipeline.ingest import BatchRequest, create_batch, ingest
from batchgate.pipeline.lifecycle import cancel
from batchgate.pipeline.reconcile import due_items, reconcile_once, take_over_ingests
from batchgate.store.ingest import store_group
from batchgate.store.items import BATCH, ITEM, claim
from tests.integration.stored_files import upload

pytestmark = pytest.mark.storage

CONFIG = parse_config(
    {
        "model_list": [
            {
                "model_name": "m1",
                "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:9"},
            }
        ]
    }
)
GROUP = 10


class APIDied(Exception):
    pass


@pytest.fixture
def env(env, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The conftest's store, with small ingest groups."""
    monkeypatch.setattr(ingest_mod, "INGEST_GROUP", GROUP)
    return env


def _line(i: int) -> dict[str, Any]:
    return {
        "custom_id": f"c{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m1", "messages": [{"role": "user", "content": f"hello {i}"}]},
    }


def _batch(engine, files: FileStore, lines: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    fid = upload(engine, files, lines)
    return create_batch(
        engine, BatchRequest(tenant="t", input_file_id=fid, endpoint="/v1/chat/completions")
    )


def _items(engine, batch_id: str) -> list[Any]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(
            select(ITEM.c.id, ITEM.c.idx, ITEM.c.state).where(ITEM.c.batch_id == batch_id)
        ).all()


def _status(engine, batch_id: str) -> str:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(select(BATCH.c.status).where(BATCH.c.id == batch_id)).scalar_one()


def _after_groups(monkeypatch: pytest.MonkeyPatch, n: int, then: Any) -> list[int]:
    """Run `then()` right after the ingest's n-th stored group; returns the groups' sizes."""
    sizes: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> bool:
        stored = store_group(*args, **kwargs)
        sizes.append(len(args[4]))
        if len(sizes) == n:
            then()
        return stored

    monkeypatch.setattr(ingest_mod, "store_group", counted)
    return sizes


def _die() -> None:
    raise APIDied


def _ingest_dying_after(env: Any, monkeypatch: pytest.MonkeyPatch, groups: int) -> Any:
    """A 45-line batch whose API dies right after storing `groups` groups; returns the batch."""
    settings, engine, files = env
    batch = _batch(engine, files, [_line(i) for i in range(45)])
    _after_groups(monkeypatch, groups, _die)
    with pytest.raises(APIDied):
        ingest(engine, settings, CONFIG, files, batch.id, lambda b, v, ids: 1)
    return batch


def test_ingest_commits_each_group_and_nothing_runs_them_while_validating(env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings, engine, files = env
    batch = _batch(engine, files, [_line(i) for i in range(35)])
    seen: dict[str, Any] = {}

    def look() -> None:
        # From other connections, between two groups: the first group is committed (so the
        # write lock is free), and neither a worker's claim nor the reconciler takes its items.
        rows = _items(engine, batch.id)
        seen["stored"] = len(rows)
        seen["status"] = _status(engine, batch.id)
        seen["claimed"] = claim(engine, [r.id for r in rows], "w1", time.time(), 60)
        seen["due"] = due_items(engine, time.time(), time.time(), {"openai"})
        with engine.begin() as conn:  # another batch's write goes through at once
            conn.execute(BATCH.update().where(BATCH.c.id == "other").values(priority=1))

    commits: list[float] = []
    event.listen(engine, "commit", lambda conn: commits.append(time.time()))
    sizes = _after_groups(monkeypatch, 1, look)
    sent: list[int] = []
    status = ingest(
        engine, settings, CONFIG, files, batch.id, lambda b, v, ids: sent.extend(ids) or 1
    )
    assert status == "in_progress"
    assert sizes == [GROUP, GROUP, GROUP]  # the last 5 go with the move to in_progress
    assert seen == {"stored": GROUP, "status": "validating", "claimed": [], "due": {}}
    assert len(commits) >= 4
    assert sorted(r.idx for r in _items(engine, batch.id)) == list(range(35))
    assert len(sent) == 35


def test_a_bad_line_late_in_the_file_fails_the_batch_and_leaves_no_items(env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings, engine, files = env
    lines = [_line(i) for i in range(45)]
    lines[37]["method"] = "GET"
    batch = _batch(engine, files, lines)
    stored: list[int] = []
    sizes = _after_groups(monkeypatch, 3, lambda: stored.append(len(_items(engine, batch.id))))
    sent: list[int] = []
    status = ingest(
        engine, settings, CONFIG, files, batch.id, lambda b, v, ids: sent.extend(ids) or 1
    )
    assert status == "failed" and sent == []
    assert sizes == [GROUP] * 3 and stored == [30]  # stored before the bad line was read
    assert _items(engine, batch.id) == []
    with engine.connect() as conn:
        row = conn.execute(select(BATCH).where(BATCH.c.id == batch.id)).one()
    assert row.status == "failed" and '"line": 38' in row.errors_json
    assert row.ingest_lease_until is None


def _lease_end(engine, batch_id: str) -> float:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        lease = conn.execute(select(BATCH.c.ingest_lease_until).where(BATCH.c.id == batch_id))
        return float(lease.scalar_one())


def _reconcile(engine, files, now: float, reingest: Any = None) -> Any:  # type: ignore[no-untyped-def]
    return reconcile_once(
        engine,
        files,
        lambda *a: 1,
        lambda v: 0,
        stale_enqueue_seconds=30,
        reingest=reingest,
        now=now,
    )


def test_a_takeover_after_a_partial_ingest_leaves_exactly_one_item_per_line(
    env, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    settings, engine, files = env
    batch = _ingest_dying_after(env, monkeypatch, 2)
    assert len(_items(engine, batch.id)) == 2 * GROUP and _status(engine, batch.id) == "validating"

    monkeypatch.setattr(ingest_mod, "store_group", store_group)
    sent: list[int] = []

    def reingest(batch_id: str) -> None:
        ingest(engine, settings, CONFIG, files, batch_id, lambda b, v, ids: sent.extend(ids) or 1)

    report = _reconcile(engine, files, _lease_end(engine, batch.id) + 1, reingest)
    assert report.reingested == 1 and _status(engine, batch.id) == "in_progress"
    rows = _items(engine, batch.id)
    assert sorted(r.idx for r in rows) == list(range(45)) and sorted(sent) == sorted(
        r.id for r in rows
    )
    # The dead API's attempt is fenced off: a late group of it stores nothing.
    assert not store_group(engine, batch.id, 1, time.time() + 30, [])
    with engine.connect() as conn:
        assert (
            conn.execute(select(func.count()).where(ITEM.c.batch_id == batch.id)).scalar_one() == 45
        )


def test_a_cancel_mid_ingest_is_finalized_only_once_its_partial_items_are_gone(
    env, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    _, engine, files = env
    batch = _ingest_dying_after(env, monkeypatch, 2)
    assert cancel(engine, files, batch.id)
    assert _status(engine, batch.id) == "cancelling"
    assert not try_finalize(engine, files, batch.id)  # its 20 items are not the batch's lines
    lease = _lease_end(engine, batch.id)
    _reconcile(engine, files, lease - 1)  # the ingest's owner may still be clearing them
    assert _status(engine, batch.id) == "cancelling"
    assert sorted(r.state for r in _items(engine, batch.id)) == ["queued"] * 2 * GROUP

    _reconcile(engine, files, lease + 1)  # its owner died: the reconciler clears them
    assert _items(engine, batch.id) == [] and _status(engine, batch.id) == "cancelled"


def test_an_ingest_cancelled_between_groups_clears_its_items_and_ends_cancelled(
    env, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    settings, engine, files = env
    batch = _batch(engine, files, [_line(i) for i in range(45)])
    _after_groups(monkeypatch, 2, lambda: cancel(engine, files, batch.id))
    sent: list[int] = []
    status = ingest(
        engine, settings, CONFIG, files, batch.id, lambda b, v, ids: sent.extend(ids) or 1
    )
    assert status == "cancelled" and sent == [] and _items(engine, batch.id) == []


def test_items_of_a_batch_expired_mid_ingest_are_cleared_after_its_owner_died(
    env, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    _, engine, files = env
    batch = _ingest_dying_after(env, monkeypatch, 1)
    later = max(batch.expires_at, _lease_end(engine, batch.id)) + 1
    _reconcile(engine, files, later)  # expires it; its lapsed ingest's items are removed
    assert _status(engine, batch.id) == "expired" and _items(engine, batch.id) == []


def test_an_api_ingest_that_starts_after_a_takeover_stores_nothing(env) -> None:  # type: ignore[no-untyped-def]
    settings, engine, files = env
    batch = _batch(engine, files, [_line(i) for i in range(25)])
    # The API's ingest waited in its pool past its lease: the reconciler takes the batch over.
    assert take_over_ingests(engine, _lease_end(engine, batch.id) + 1) == [batch.id]
    late: list[int] = []
    status = ingest(
        engine, settings, CONFIG, files, batch.id, lambda b, v, ids: late.extend(ids) or 1, 1
    )
    assert status == "validating" and late == [] and _items(engine, batch.id) == []
    sent: list[int] = []  # the takeover's ingest (attempt 2) runs as if alone
    status = ingest(
        engine, settings, CONFIG, files, batch.id, lambda b, v, ids: sent.extend(ids) or 1
    )
    assert status == "in_progress" and len(sent) == 25
    assert sorted(r.idx for r in _items(engine, batch.id)) == list(range(25))


def test_store_group_returns_the_ids_it_gave_in_row_order(env) -> None:  # type: ignore[no-untyped-def]
    _, engine, files = env
    first, second = (_batch(engine, files, [_line(0)]) for _ in range(2))
    lease = time.time() + 30

    def rows(batch_id: str, start: int) -> list[tuple[Any, ...]]:
        body = '{"model":"m1","messages":[]}'
        return [
            (batch_id, i, f"c{i}", body, "m1", "openai", '["m1"]', "queued")
            for i in range(start, start + 3)
        ]

    # Two ingests' groups interleave: each gets new ids, increasing in input order.
    a = store_group(engine, first.id, 1, lease, rows(first.id, 0))
    b = store_group(engine, second.id, 1, lease, rows(second.id, 0))
    c = store_group(engine, first.id, 1, lease, rows(first.id, 3))
    assert a is not None and b is not None and c is not None
    assert list(a) == sorted(a) and list(c) == sorted(c) and max(a) < min(c)
    assert len({*a, *b, *c}) == 9
    with engine.connect() as conn:
        stored = conn.execute(
            select(ITEM.c.id).where(ITEM.c.batch_id == first.id).order_by(ITEM.c.idx)
        )
        assert list(stored.scalars()) == [*a, *c]
    assert store_group(engine, first.id, 2, lease, rows(first.id, 6)) is None  # not ours


def test_ingest_sends_the_ids_it_stored_per_vendor_in_input_order(env) -> None:  # type: ignore[no-untyped-def]
    settings, engine, files = env
    spread = parse_config(
        {
            "model_list": [
                {
                    "model_name": "m1",
                    "litellm_params": {"model": f"{vendor}/gpt-4o-mini", "api_base": "http://x"},
                }
                for vendor in ("openai", "vllm")
            ],
            # Lines alternate between the two vendors, by input index.
            "batchgate_settings": {
                "vendors": {v: {"max_concurrency": 1} for v in ("openai", "vllm")}
            },
        }
    )
    batch = _batch(engine, files, [_line(i) for i in range(45)])
    sent: dict[str, list[int]] = {}
    status = ingest(
        engine,
        settings,
        spread,
        files,
        batch.id,
        lambda b, v, ids: sent.setdefault(v, []).extend(ids) or 1,
    )
    assert status == "in_progress"
    with engine.connect() as conn:
        rows = conn.execute(
            select(ITEM.c.id, ITEM.c.vendor, ITEM.c.enqueued_at)
            .where(ITEM.c.batch_id == batch.id)
            .order_by(ITEM.c.idx)
        ).all()
    assert {r.vendor for r in rows} == {"openai", "vllm"}
    assert sent == {v: [r.id for r in rows if r.vendor == v] for v in ("openai", "vllm")}
    assert all(r.enqueued_at is not None for r in rows)


def _analyzes(engine) -> int:  # type: ignore[no-untyped-def]
    """How many times the item table was analyzed: PostgreSQL counts them; SQLite has its
    statistics table only once something ran ANALYZE."""
    with engine.connect() as conn:  # a new transaction: PostgreSQL's stats snapshot is fresh
        if engine.dialect.name == "postgresql":
            return conn.exec_driver_sql(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'item'"
            ).scalar_one()
        return conn.exec_driver_sql(
            "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"
        ).scalar_one()


def test_a_big_ingest_refreshes_the_item_statistics_on_postgresql_only(env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Claims on a just-filled item table were planned on an empty table's statistics
    (PostgreSQL); SQLite's planner was not seen to need it, and is left alone."""
    settings, engine, files = env
    monkeypatch.setattr(store_ingest, "ANALYZE_AFTER", 25)
    small = _batch(engine, files, [_line(i) for i in range(24)])
    before = _analyzes(engine)
    assert ingest(engine, settings, CONFIG, files, small.id, lambda *a: 1) == "in_progress"
    assert _analyzes(engine) == before  # below the threshold: left to autovacuum
    big = _batch(engine, files, [_line(i) for i in range(25)])
    assert ingest(engine, settings, CONFIG, files, big.id, lambda *a: 1) == "in_progress"
    assert _analyzes(engine) == before + (engine.dialect.name == "postgresql")
