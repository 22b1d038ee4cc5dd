"""The API's list pages (`store/listing.py`): keyset pages on (created_at, id) that never repeat
or skip a row, in either direction, and never show another tenant's batches."""

from __future__ import annotations

from typing import Any

import pytest

from batchgate.store.db import reading
from batchgate.store.items import BATCH
from batchgate.store.listing import batch_page

pytestmark = pytest.mark.storage

# (id, tenant, created_at): two pairs share a second, so ties are broken by id.
BATCHES = [
    ("batch_a", "t", 100),
    ("msgbatch_b", "t", 100),
    ("msgbatch_c", "t", 200),
    ("batch_d", "t", 300),
    ("msgbatch_e", "t", 300),
    ("msgbatch_f", "other", 250),
]
NEWEST_FIRST = ["msgbatch_e", "batch_d", "msgbatch_c", "msgbatch_b", "batch_a"]


def _store(engine: Any) -> None:
    rows = [
        {
            "id": ident,
            "tenant": tenant,
            "input_file_id": "file-x",
            "endpoint": "/v1/chat/completions",
            "status": "completed",
            "created_at": created_at,
            "expires_at": created_at + 86400,
        }
        for ident, tenant, created_at in BATCHES
    ]
    with engine.begin() as conn:
        conn.execute(BATCH.insert(), rows)


def _walk(engine: Any, size: int, **kw: Any) -> list[str]:
    """Every page of `size`, each starting after the last row of the one before (a page that
    does not move on ends the walk, so a wrong cursor fails instead of looping)."""
    seen: list[str] = []
    cursor = None
    for _ in BATCHES:
        with reading(engine) as conn:
            rows = batch_page(conn, "t", size + 1, after=cursor, **kw)
        seen += [r.id for r in rows[:size]]
        if len(rows) <= size:
            return seen
        last = rows[size - 1]
        cursor = (last.created_at, last.id)
    return seen


def test_pages_newest_first_cover_each_batch_once(env: Any) -> None:
    _, engine, _ = env
    _store(engine)
    assert _walk(engine, 2) == NEWEST_FIRST
    assert _walk(engine, 1) == NEWEST_FIRST


def test_pages_oldest_first_run_the_other_way(env: Any) -> None:
    _, engine, _ = env
    _store(engine)
    assert _walk(engine, 2, newest_first=False) == NEWEST_FIRST[::-1]


def test_a_prefix_keeps_one_apis_batches(env: Any) -> None:
    _, engine, _ = env
    _store(engine)
    ids = [i for i in NEWEST_FIRST if i.startswith("msgbatch_")]
    assert _walk(engine, 2, id_prefix="msgbatch_") == ids
    # Anthropic's `before_id`: the nearest newer ones, first past the cursor going up.
    with reading(engine) as conn:
        newer = batch_page(
            conn, "t", 2, after=(100, "msgbatch_b"), newest_first=False, id_prefix="msgbatch_"
        )
    assert [r.id for r in newer] == ["msgbatch_c", "msgbatch_e"]
