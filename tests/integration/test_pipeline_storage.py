"""The item lifecycle on a real database (SQLite, or PostgreSQL in CI): ingest, claim, fenced
apply, finalize in input order, reconcile of expired leases."""

from __future__ import annotations

import json
import os
import time

import pytest
from sqlalchemy import func, select, update

from batchgate.config import parse_config
from batchgate.filestore import PARTIAL_STALE_SECONDS, FileStore
from batchgate.pipeline import finalize
from batchgate.pipeline.finalize import try_finalize
from batchgate.pipeline.ingest import INGEST_LEASE_SECONDS, BatchRequest, create_batch, ingest
from batchgate.pipeline.lifecycle import cancel
from batchgate.pipeline.output_lines import LineWriter
from batchgate.pipeline.reconcile import (
    DEAD_AFTER_SECONDS,
    MAX_INGEST_ATTEMPTS,
    DeathWatch,
    reconcile_once,
)
from batchgate.store.answers import LINE_COLUMNS
from batchgate.store.items import ATTEMPT, BATCH, ITEM, AttemptRow, ItemUpdate, apply, claim
from batchgate.store.models import File
from tests.integration.stored_files import upload

pytestmark = pytest.mark.storage

CONFIG = parse_config(
    {
        "model_list": [
            {
                "model_name": "m1",
                "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": "http://127.0.0.1:9"},
            },
            {"model_name": "m2", "litellm_params": {"model": "anthropic/claude-3-5-haiku-latest"}},
        ],
        "router_settings": {"fallbacks": [{"m1": ["m2"]}]},
    }
)


def _lines(n: int) -> list[dict]:
    return [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m1", "messages": [{"role": "user", "content": f"hello {i}"}]},
        }
        for i in range(n)
    ]


def _new_batch(engine, files: FileStore, n: int):  # type: ignore[no-untyped-def]
    """A validating batch over a stored file of `n` chat lines."""
    fid = upload(engine, files, _lines(n))
    return create_batch(
        engine, BatchRequest(tenant="t", input_file_id=fid, endpoint="/v1/chat/completions")
    )


def test_ingest_claim_apply_finalize_in_input_order(env) -> None:  # type: ignore[no-untyped-def]
    settings, engine, files = env
    batch = _new_batch(engine, files, 30)
    sent: list[tuple[str, str, list[int]]] = []
    status = ingest(
        engine, settings, CONFIG, files, batch.id, lambda b, v, ids: sent.append((b, v, ids)) or 1
    )
    assert status == "in_progress"
    ids = [i for _, _, chunk in sent for i in chunk]
    assert len(ids) == 30 and all(v == "openai" for _, v, _ in sent)

    claimed = claim(engine, ids, "w1", time.time(), 60)
    assert len(claimed) == 30
    assert claim(engine, ids, "w2", time.time(), 60) == []  # leased: a second claim takes nothing
    assert claimed[0].chain == ["m1", "m2"]

    now = time.time()
    updates, attempts = [], []
    for c in claimed:
        ok = c.idx % 3 != 0
        attempts.append(
            AttemptRow(
                item_id=c.id,
                batch_id=c.batch_id,
                alias="m1",
                deployment_id="m1#0",
                vendor="openai",
                started_at=now,
                finished_at=now,
                status="ok" if ok else "error",
                input_tokens=10,
                output_tokens=5,
                cost_pusd=1_500_000,
            )
        )
        updates.append(
            ItemUpdate(
                id=c.id,
                state="succeeded" if ok else "failed",
                attempts=1,
                model_attempts=1,
                alias="m1",
                vendor="openai",
                chain_pos=0,
                tried=[],
                chain=c.chain,
                finished_at=now,
                result={"status_code": 200, "request_id": "r", "body": {"n": c.idx}}
                if ok
                else None,
                error=None
                if ok
                else {"code": "invalid_request", "message": "bad", "status_code": 400},
            )
        )
    # A stale owner cannot overwrite: its attempts are kept, flagged duplicate.
    stale = apply(engine, "someone-else", updates[:1], attempts[:1])
    assert stale.stale == {claimed[0].id}
    applied = apply(engine, "w1", updates, attempts)
    assert applied.stale == set()

    assert try_finalize(engine, files, batch.id)
    assert not try_finalize(engine, files, batch.id)  # exactly one finalizer wins
    with engine.connect() as conn:
        row = conn.execute(select(BATCH).where(BATCH.c.id == batch.id)).one()
        dup = conn.execute(select(ATTEMPT.c.duplicate).where(ATTEMPT.c.duplicate.is_(True))).all()
    assert row.status == "completed"
    assert (row.completed_count, row.failed_count) == (20, 10)
    assert len(dup) == 1
    summary = json.loads(row.summary_json)
    # 31 attempts × 1.5e-6 USD, the duplicate included in the total and reported apart.
    assert summary["cost_usd"] == "0.000046500000"
    assert summary["duplicate_spend_usd"] == "0.000001500000"
    out = [json.loads(x) for x in files.open(_path(engine, row.output_file_id)).read().splitlines()]
    err = [json.loads(x) for x in files.open(_path(engine, row.error_file_id)).read().splitlines()]
    assert [x["custom_id"] for x in out] == [f"c{i}" for i in range(30) if i % 3]
    assert [x["custom_id"] for x in err] == [f"c{i}" for i in range(30) if i % 3 == 0]
    assert out[0]["response"]["body"] == {"n": 1}
    assert err[0]["response"]["status_code"] == 400 and err[0]["error"]["code"] == "invalid_request"
    line_costs = sum(int(x["batchgate"]["cost_usd"].replace(".", "")) for x in out + err)
    assert line_costs == 30 * 1_500_000  # lines sum to total minus duplicate spend, exactly


def _path(engine, file_id: str) -> str:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(
            select(File.__table__.c.path).where(File.__table__.c.id == file_id)
        ).scalar_one()  # type: ignore[attr-defined]


def test_reconciler_releases_dead_leases_and_reenqueues(env) -> None:  # type: ignore[no-untyped-def]
    settings, engine, files = env
    batch = _new_batch(engine, files, 5)
    sent: list[list[int]] = []
    ingest(engine, settings, CONFIG, files, batch.id, lambda b, v, ids: sent.append(ids) or 1)
    ids = sent[0]
    claim(engine, ids, "dead-worker", time.time(), lease=0.01)
    sent.clear()
    report = reconcile_once(
        engine,
        files,
        lambda b, v, i: sent.append(i) or 1,
        lambda v: 0,
        stale_enqueue_seconds=30,
        now=time.time() + 1,
    )
    assert report.released == 5
    assert sorted(sent[0]) == sorted(ids)
    with engine.connect() as conn:
        lost = (
            conn.execute(select(ATTEMPT.c.status).where(ATTEMPT.c.batch_id == batch.id))
            .scalars()
            .all()
        )
        states = (
            conn.execute(select(ITEM.c.state).where(ITEM.c.batch_id == batch.id)).scalars().all()
        )
    assert lost == ["lost"] * 5
    assert states == ["queued"] * 5
    # Messages just sent are not stale: a second round enqueues nothing new.
    sent.clear()
    reconcile_once(
        engine,
        files,
        lambda b, v, i: sent.append(i) or 1,
        lambda v: 0,
        stale_enqueue_seconds=30,
        now=time.time() + 2,
    )
    assert sent == []


def test_a_cancel_whose_workers_died_holding_leases_still_ends_cancelled(env) -> None:  # type: ignore[no-untyped-def]
    settings, engine, files = env
    batch = _new_batch(engine, files, 4)
    sent: list[list[int]] = []
    ingest(engine, settings, CONFIG, files, batch.id, lambda b, v, ids: sent.append(ids) or 1)
    claim(engine, sent[0][:2], "dead-worker", time.time(), lease=0.01)
    assert cancel(engine, files, batch.id)  # the two queued lines end now, two are in flight
    for later in (1, 2):  # round 1 releases the dead leases; the items must not wait forever
        reconcile_once(
            engine,
            files,
            lambda *a: 1,
            lambda v: 0,
            stale_enqueue_seconds=30,
            now=time.time() + later,
        )
    with engine.connect() as conn:
        status = conn.execute(select(BATCH.c.status).where(BATCH.c.id == batch.id)).scalar_one()
        states = conn.execute(select(ITEM.c.state).where(ITEM.c.batch_id == batch.id)).scalars()
        assert status == "cancelled" and sorted(states) == ["cancelled"] * 4


def test_reconciler_reingests_a_batch_an_api_crash_left_validating(env) -> None:  # type: ignore[no-untyped-def]
    settings, engine, files = env
    batch = _new_batch(engine, files, 4)
    sent: list[list[int]] = []

    def reingest(batch_id: str) -> None:
        ingest(engine, settings, CONFIG, files, batch_id, lambda b, v, ids: sent.append(ids) or 1)

    young = reconcile_once(
        engine,
        files,
        lambda *a: 1,
        lambda v: 0,
        stale_enqueue_seconds=30,
        reingest=reingest,
        now=time.time(),
    )
    assert young.reingested == 0  # the creating API's ingest holds its lease
    old = reconcile_once(
        engine,
        files,
        lambda *a: 1,
        lambda v: 0,
        stale_enqueue_seconds=30,
        reingest=reingest,
        now=time.time() + INGEST_LEASE_SECONDS + 1,  # promptly: not the 600 s it once waited
    )
    assert old.reingested == 1 and len(sent[0]) == 4
    with engine.connect() as conn:
        assert (
            conn.execute(select(BATCH.c.status).where(BATCH.c.id == batch.id)).scalar_one()
            == "in_progress"
        )


def test_a_batch_still_validating_past_its_window_expires(env) -> None:  # type: ignore[no-untyped-def]
    _, engine, files = env
    batch = _new_batch(engine, files, 2)
    report = reconcile_once(
        engine,
        files,
        lambda *a: 1,
        lambda v: 0,
        stale_enqueue_seconds=30,
        reingest=lambda batch_id: None,
        now=batch.expires_at + 1,
    )
    assert report.expired == 1
    with engine.connect() as conn:
        row = conn.execute(select(BATCH).where(BATCH.c.id == batch.id)).one()
    assert row.status == "expired" and row.expired_at is not None


def test_an_ingest_that_keeps_dying_is_retried_a_few_times_then_fails_the_batch(env) -> None:  # type: ignore[no-untyped-def]
    _, engine, files = env
    batch = _new_batch(engine, files, 2)
    tries: list[str] = []
    now = time.time()
    for _ in range(MAX_INGEST_ATTEMPTS + 2):
        now += INGEST_LEASE_SECONDS + 1  # each ingest dies without a word: its lease lapses
        reconcile_once(
            engine,
            files,
            lambda *a: 1,
            lambda v: 0,
            stale_enqueue_seconds=30,
            reingest=tries.append,
            now=now,
        )
    assert tries == [batch.id] * (MAX_INGEST_ATTEMPTS - 1)  # the first attempt was the API's
    with engine.connect() as conn:
        row = conn.execute(select(BATCH).where(BATCH.c.id == batch.id)).one()
    assert row.status == "failed" and "ingest_failed" in row.errors_json


def test_a_cancel_during_ingest_leaves_no_items_and_sends_nothing(env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from batchgate.pipeline import lifecycle

    settings, engine, files = env
    batch = _new_batch(engine, files, 3)
    sent: list[list[int]] = []
    original = lifecycle.cancel

    import batchgate.pipeline.ingest as ingest_mod

    real_store = ingest_mod.store_group

    def store_then_cancel(*args, **kwargs):  # type: ignore[no-untyped-def]
        stored = real_store(*args, **kwargs)
        assert original(engine, files, batch.id)  # the user cancels while the file is read
        return stored

    monkeypatch.setattr(ingest_mod, "INGEST_GROUP", 2)  # a first group is stored, then cancel
    monkeypatch.setattr(ingest_mod, "store_group", store_then_cancel)
    status = ingest(
        engine, settings, CONFIG, files, batch.id, lambda b, v, ids: sent.append(ids) or 1
    )
    assert status == "cancelled" and sent == []
    with engine.connect() as conn:
        assert conn.execute(select(ITEM.c.id).where(ITEM.c.batch_id == batch.id)).all() == []
        assert (
            conn.execute(select(BATCH.c.status).where(BATCH.c.id == batch.id)).scalar_one()
            == "cancelled"
        )


def test_two_workers_refilling_at_once_both_get_items(env) -> None:  # type: ignore[no-untyped-def]
    """Worker A's refill holds its rows (PostgreSQL: row locks until commit) while worker B
    refills from the same batch: B must get the next rows, not wait for A's and then come back
    empty (which ends B's refilling for good)."""
    import threading

    from sqlalchemy import event

    from batchgate.store.db import is_sqlite
    from batchgate.store.items import claim_next

    settings, engine, files = env
    batch = _new_batch(engine, files, 40)
    ingest(engine, settings, CONFIG, files, batch.id, lambda b, v, ids: 1)
    got: dict[str, list[int]] = {}

    def refill(owner: str) -> None:
        got[owner] = [c.idx for c in claim_next(engine, batch.id, "openai", 10, owner, 1e12, 60)]

    if is_sqlite(engine):
        # SQLite serialises writers (BEGIN IMMEDIATE): B runs after A, the same question.
        refill("a")
        refill("b")
    else:
        a_claimed, b_done = threading.Event(), threading.Event()

        def pause_a(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
            if threading.current_thread().name == "worker-a" and "UPDATE item" in statement:
                a_claimed.set()
                b_done.wait(30)  # hold A's transaction (and its row locks) open until B is done

        event.listen(engine, "after_cursor_execute", pause_a)
        a = threading.Thread(target=refill, args=("a",), name="worker-a")
        a.start()
        assert a_claimed.wait(30)
        try:
            refill("b")
        finally:
            b_done.set()
            a.join(30)
            event.remove(engine, "after_cursor_execute", pause_a)
    assert got["a"] == list(range(10))
    assert got["b"] == list(range(10, 20))


def test_reads_do_not_wait_for_a_long_write(env) -> None:  # type: ignore[no-untyped-def]
    """A status read (the API's GET, a worker's batch lookup) while another connection holds
    a write transaction open, as a million-line ingest does: it answers from the committed
    state at once instead of queueing for the write lock."""
    from batchgate.store.db import reading

    _, engine, files = env
    batch = _new_batch(engine, files, 3)
    with engine.begin() as writer:
        writer.execute(BATCH.update().where(BATCH.c.id == batch.id).values(status="cancelling"))
        started = time.monotonic()
        with reading(engine) as conn:
            status = conn.execute(select(BATCH.c.status).where(BATCH.c.id == batch.id)).scalar()
        waited = time.monotonic() - started
    assert status == "validating"  # the writer's change is not committed yet
    assert waited < 5  # the busy timeout is 30 s: a read that queued would wait it out


def test_enqueue_pages_through_a_batch_in_input_order(env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import batchgate.pipeline.ingest as ingest_mod

    monkeypatch.setattr(ingest_mod, "ENQUEUE_PAGE", 7)  # 30 lines: pages of 7, 7, 7, 7, 2
    settings, engine, files = env
    batch = _new_batch(engine, files, 30)
    sent: list[list[int]] = []
    ingest(engine, settings, CONFIG, files, batch.id, lambda b, v, ids: sent.append(ids) or 1)
    with engine.connect() as conn:
        order = (
            conn.execute(select(ITEM.c.id).where(ITEM.c.batch_id == batch.id).order_by(ITEM.c.idx))
            .scalars()
            .all()
        )
        unsent = conn.execute(
            select(ITEM.c.id).where(ITEM.c.batch_id == batch.id, ITEM.c.enqueued_at.is_(None))
        ).all()
    assert [len(ids) for ids in sent] == [7, 7, 7, 7, 2]
    assert [i for ids in sent for i in ids] == list(order)
    assert unsent == []
    # The reconciler's next round finds everything marked: nothing is sent twice.
    sent.clear()
    report = reconcile_once(
        engine,
        files,
        lambda b, v, ids: sent.append(ids) or 1,
        lambda v: 0,
        stale_enqueue_seconds=30,
    )
    assert report.enqueued == 0
    assert sent == []


def test_the_reconciler_sweeps_partial_uploads_a_dead_writer_left(env) -> None:  # type: ignore[no-untyped-def]
    _, engine, files = env
    dead, live = files.root / "file-dead.part", files.root / "file-live.part"
    dead.write_bytes(b'{"custom_id": "half a li')
    live.write_bytes(b"still arriving")
    old = time.time() - PARTIAL_STALE_SECONDS - 5
    os.utime(dead, (old, old))
    report = reconcile_once(engine, files, lambda *a: 1, lambda v: 0, stale_enqueue_seconds=30)
    assert report.swept == 1
    assert not dead.exists() and live.exists()


def _all_done(env, n: int) -> str:  # type: ignore[no-untyped-def]
    """A batch of `n` lines, all succeeded, not yet finalized."""
    settings, engine, files = env
    batch = _new_batch(engine, files, n)
    sent: list[list[int]] = []
    ingest(engine, settings, CONFIG, files, batch.id, lambda b, v, ids: sent.append(ids) or 1)
    claimed = claim(engine, [i for chunk in sent for i in chunk], "w1", time.time(), 60)
    done = [
        ItemUpdate(
            id=c.id,
            state="succeeded",
            attempts=1,
            model_attempts=1,
            alias="m1",
            vendor="openai",
            chain_pos=0,
            tried=[],
            chain=c.chain,
            finished_at=time.time(),
            result={"status_code": 200, "request_id": "r", "body": {"n": c.idx}},
        )
        for c in claimed
    ]
    apply(engine, "w1", done, [])
    return batch.id


def _finalizing_since(engine, batch_id: str, stamp: int) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(
            update(BATCH)
            .where(BATCH.c.id == batch_id)
            .values(status="finalizing", finalizing_at=stamp)
        )


def test_a_slow_finalizer_renews_its_lease_and_is_not_finalized_twice(  # type: ignore[no-untyped-def]
    env, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, engine, files = env
    batch_id = _all_done(env, 5)
    started = int(time.time()) - 200  # a finalizer writing for 200 s already (a huge batch)
    _finalizing_since(engine, batch_id, started)
    monkeypatch.setattr(finalize, "FINALIZE_RENEW_SECONDS", -1.0)  # renew at every check
    real_line, takeovers = LineWriter.encoded, []

    def line_then_reconciler_looks(self, row, *rest):  # type: ignore[no-untyped-def]
        if row[LINE_COLUMNS.index(ITEM.c.idx)] == 2:  # mid-write, the reconciler looks
            stale = int(time.time()) - 120
            takeovers.append(finalize.try_finalize(engine, files, batch_id, stale_before=stale))
        return real_line(self, row, *rest)

    monkeypatch.setattr(LineWriter, "encoded", line_then_reconciler_looks)
    finalize.write_results(engine, files, batch_id, lease=started)
    assert takeovers == [False]  # the renewed lease said: alive
    with engine.connect() as conn:
        status = conn.execute(select(BATCH.c.status).where(BATCH.c.id == batch_id)).scalar_one()
        outputs = conn.execute(
            select(func.count()).where(File.__table__.c.filename.like(f"{batch_id}_%"))
        ).scalar_one()
    assert status == "completed" and outputs == 1


def test_a_finalizer_taken_over_commits_nothing(env) -> None:  # type: ignore[no-untyped-def]
    _, engine, files = env
    batch_id = _all_done(env, 3)
    dead = int(time.time()) - 500
    _finalizing_since(engine, batch_id, dead)
    assert finalize.try_finalize(engine, files, batch_id, stale_before=dead + 1)
    with engine.connect() as conn:
        first = conn.execute(select(BATCH.c.output_file_id).where(BATCH.c.id == batch_id)).one()
    with pytest.raises(finalize.FinalizeLost):  # the presumed-dead one wakes up and finishes
        finalize.write_results(engine, files, batch_id, lease=dead)
    with engine.connect() as conn:
        after = conn.execute(select(BATCH.c.output_file_id).where(BATCH.c.id == batch_id)).one()
        outputs = conn.execute(
            select(func.count()).where(File.__table__.c.filename.like(f"{batch_id}_%"))
        ).scalar_one()
    assert after == first and outputs == 1
    assert len(list(files.root.iterdir())) == 2  # the input and the one output: no strays


def test_a_dead_workers_leases_are_released_within_seconds_not_at_lease_end(env) -> None:  # type: ignore[no-untyped-def]
    settings, engine, files = env
    batch = _new_batch(engine, files, 4)
    sent: list[list[int]] = []
    ingest(engine, settings, CONFIG, files, batch.id, lambda b, v, ids: sent.append(ids) or 1)
    ids = sent[0]
    now = time.time()
    assert len(claim(engine, ids[:2], "host:111:chunk1", now, 600)) == 2  # this one dies
    assert len(claim(engine, ids[2:], "host:222:chunk2", now, 600)) == 2  # this one lives
    deaths = DeathWatch(lambda workers: {w for w in workers if w == "host:222"})

    def round_at(t: float) -> int:
        return reconcile_once(
            engine, files, lambda *a: 1, lambda v: 0, stale_enqueue_seconds=30, deaths=deaths, now=t
        ).released

    assert round_at(now + 1) == 0  # missing once: maybe a broker restart, not yet dead
    assert round_at(now + 1 + DEAD_AFTER_SECONDS) == 2  # long before the 600 s lease ends
    with engine.connect() as conn:
        states = dict(conn.execute(select(ITEM.c.id, ITEM.c.state).where(ITEM.c.id.in_(ids))).all())
        lost = (
            conn.execute(select(ATTEMPT.c.item_id).where(ATTEMPT.c.status == "lost"))
            .scalars()
            .all()
        )
    assert [states[i] for i in ids] == ["queued", "queued", "running", "running"]
    assert sorted(lost) == sorted(ids[:2])  # the calls it may have made are counted
    # A late write from the dead process is fenced off: its outcome is not applied.
    stale = apply(
        engine,
        "host:111:chunk1",
        [ItemUpdate(ids[0], "succeeded", 1, 1, "m1", "openai", 0, [], finished_at=time.time())],
        [],
    )
    assert stale.stale == {ids[0]}
