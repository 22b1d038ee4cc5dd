"""The response body on a real database: the recorder stores it once, in its own column, and
finalize and live results splice it into lines as stored; rows of older releases (the body inside
`result_json`) finalize to the same bytes."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import select, text, update

from batchgate.config import parse_config
from batchgate.filestore import FileStore
from batchgate.pipeline.finalize import write_results
from batchgate.pipeline.ingest import BatchRequest, create_batch, ingest
from batchgate.store import migrate
from batchgate.store.answers import LINE_COLUMNS, line_rows
from batchgate.store.db import reading
from batchgate.store.items import BATCH, ITEM, ItemUpdate, apply, claim
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


def _body(i: int) -> dict:
    return {"id": f"c{i}", "choices": [{"message": {"content": f"Grüße {i} — 你好"}}], "n": 1.0}


def _raw(i: int) -> str:
    """The body of line `i` as a vendor might spell it (no JSON encoder here writes this)."""
    content = "Gr\\u00fc\\u00dfe " + str(i)
    return (
        '{"id":"c' + str(i) + '",  "choices":[{"message":{"content":"' + content + '"}}], "n":1.0}'
    )


def _finished_batch(env, n: int, raw: bool = False) -> str:  # type: ignore[no-untyped-def]
    """A batch of `n` lines recorded by `apply` (every third one failed), not yet finalized;
    with `raw`, each answer carries the body text as received (`Completion.raw`)."""
    settings, engine, files = env
    lines = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m1", "messages": [{"role": "user", "content": f"hi {i}"}]},
        }
        for i in range(n)
    ]
    batch = create_batch(
        engine,
        BatchRequest(
            tenant="t", input_file_id=upload(engine, files, lines), endpoint="/v1/chat/completions"
        ),
    )
    sent: list[list[int]] = []
    ingest(engine, settings, CONFIG, files, batch.id, lambda b, v, ids: sent.append(ids) or 1)
    claimed = claim(engine, [i for chunk in sent for i in chunk], "w1", time.time(), 60)
    done = [
        ItemUpdate.of(
            c,
            "failed" if c.idx % 3 == 2 else "succeeded",
            served_deployment="m1",
            finished_at=time.time(),
            result=None
            if c.idx % 3 == 2
            else {"status_code": 200, "request_id": f"r{c.idx}", "body": _body(c.idx)},
            raw_body=_raw(c.idx) if raw and c.idx % 3 != 2 else None,
            error={"code": "bad_request", "message": "no", "status_code": 400}
            if c.idx % 3 == 2
            else None,
        )
        for c in claimed
    ]
    apply(engine, "w1", done, [])
    return batch.id


def _finalize(engine, files: FileStore, batch_id: str) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """Finalize (again) and return the output and error files' bytes."""
    lease = int(time.time())
    with engine.begin() as conn:
        conn.execute(
            update(BATCH)
            .where(BATCH.c.id == batch_id)
            .values(status="finalizing", finalizing_at=lease)
        )
    write_results(engine, files, batch_id, lease)
    with engine.connect() as conn:
        out, err = conn.execute(
            select(BATCH.c.output_file_id, BATCH.c.error_file_id).where(BATCH.c.id == batch_id)
        ).one()
    return {"out": files.path(out).read_bytes(), "err": files.path(err).read_bytes()}


def _rows(engine, batch_id: str) -> list:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(
            select(ITEM.c.id, ITEM.c.idx, ITEM.c.result_json, ITEM.c.response_body)
            .where(ITEM.c.batch_id == batch_id)
            .order_by(ITEM.c.idx)
        ).all()


def test_apply_stores_the_body_once_in_its_own_column(env) -> None:  # type: ignore[no-untyped-def]
    _, engine, _ = env
    batch_id = _finished_batch(env, 6)
    rows = _rows(engine, batch_id)
    for r in rows:
        if r.idx % 3 == 2:
            assert r.result_json is None and r.response_body is None
        else:
            assert r.response_body == json.dumps(_body(r.idx), ensure_ascii=False)
            assert json.loads(r.result_json) == {"status_code": 200, "request_id": f"r{r.idx}"}


def test_apply_stores_the_body_as_the_vendor_sent_it(env) -> None:  # type: ignore[no-untyped-def]
    _, engine, files = env
    batch_id = _finished_batch(env, 3, raw=True)
    rows = _rows(engine, batch_id)
    assert [r.response_body for r in rows] == [_raw(0), _raw(1), None]
    out = _finalize(engine, files, batch_id)["out"].decode("utf-8").splitlines()
    assert f'"body": {_raw(1)}}}' in out[1]  # not parsed and encoded again


def test_finalize_splices_the_stored_body_byte_for_byte(env) -> None:  # type: ignore[no-untyped-def]
    _, engine, files = env
    batch_id = _finished_batch(env, 4)
    stored = '{"id":"spliced",   "x":[1,2]}'  # spelled as no JSON encoder here would
    with engine.begin() as conn:
        conn.execute(
            update(ITEM)
            .where(ITEM.c.batch_id == batch_id, ITEM.c.idx == 1)
            .values(response_body=stored)
        )
    out = _finalize(engine, files, batch_id)["out"].decode("utf-8").splitlines()
    assert [json.loads(x)["custom_id"] for x in out] == ["c0", "c1", "c3"]
    assert f'"body": {stored}}}' in out[1]
    assert json.loads(out[0])["response"]["body"] == _body(0)


def test_finalize_reads_the_body_as_its_utf8_bytes_escapes_and_all(env) -> None:  # type: ignore[no-untyped-def]
    _, engine, _ = env
    batch_id = _finished_batch(env, 3)
    stored = json.dumps({"t": 'a "q" \\ \n \\x00 — 你好 🎉'}, ensure_ascii=False)
    assert "\\" in stored  # backslashes, which a cast to bytea would read as escapes
    with engine.begin() as conn:
        conn.execute(
            update(ITEM)
            .where(ITEM.c.batch_id == batch_id, ITEM.c.idx == 1)
            .values(response_body=stored)
        )
    body = LINE_COLUMNS.index(ITEM.c.response_body)
    with reading(engine) as conn:
        rows = [row for block in line_rows(conn, batch_id) for row in block]
    assert [r[body] for r in rows] == [
        json.dumps(_body(0), ensure_ascii=False).encode("utf-8"),
        stored.encode("utf-8"),
        None,  # the failed line
    ]


def test_rows_from_before_the_body_column_finalize_to_the_same_bytes(env) -> None:  # type: ignore[no-untyped-def]
    _, engine, files = env
    batch_id = _finished_batch(env, 9)
    now = _finalize(engine, files, batch_id)
    # Put each body back inside result_json, as releases before the column stored it.
    rows = _rows(engine, batch_id)
    with engine.begin() as conn:
        for r in rows:
            if r.response_body is not None:
                old = {**json.loads(r.result_json), "body": json.loads(r.response_body)}
                conn.execute(
                    update(ITEM)
                    .where(ITEM.c.id == r.id)
                    .values(result_json=json.dumps(old), response_body=None)
                )
    before = _finalize(engine, files, batch_id)
    assert before == now
    assert hashlib.sha256(now["out"]).digest() != hashlib.sha256(b"").digest()
    assert len(now["out"].splitlines()) == 6 and len(now["err"].splitlines()) == 3


def test_a_downgrade_puts_each_body_back_inside_result_json(env) -> None:  # type: ignore[no-untyped-def]
    _, engine, _ = env
    batch_id = _finished_batch(env, 3)
    with engine.begin() as conn:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(migrate.MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "20_response_cache")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT idx, result_json FROM item WHERE batch_id = :b ORDER BY idx"),
            {"b": batch_id},
        ).all()
    assert json.loads(rows[0].result_json) == {
        "status_code": 200,
        "request_id": "r0",
        "body": _body(0),
    }
    assert rows[2].result_json is None  # the failed line had no answer
