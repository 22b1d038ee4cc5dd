"""An item's answer as stored, and the rows output lines are built from.

A succeeded item's answer is two columns: `response_body`, the vendor's response body as JSON
text, and `result_json`, the rest (status code, request id, provider model, usage). The body is
encoded once, when the recorder applies the outcome, exactly as an output line spells it
(`ensure_ascii=False`), so finalize splices it in without parsing and re-encoding ~600 bytes a
line. Rows written before the split keep the body inside `result_json`; every reader falls back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import LargeBinary, cast, func, literal_column, select
from sqlalchemy.engine import Connection

from batchgate.store.models import Item

ITEM = Item.__table__  # type: ignore[attr-defined]

# The columns an output line is built from, in the order `pipeline/output_lines.py` unpacks.
LINE_COLUMNS = (
    ITEM.c.id,
    ITEM.c.idx,
    ITEM.c.custom_id,
    ITEM.c.state,
    ITEM.c.alias,
    ITEM.c.vendor,
    ITEM.c.served_deployment,
    ITEM.c.attempts,
    ITEM.c.tried_json,
    ITEM.c.input_tokens,
    ITEM.c.output_tokens,
    ITEM.c.cache_read_tokens,
    ITEM.c.cache_write_tokens,
    ITEM.c.cost_pusd,
    ITEM.c.unpriced,
    ITEM.c.cached,
    ITEM.c.result_json,
    ITEM.c.response_body,
    ITEM.c.error_json,
)

# Where a row's id and state are, for callers that read rows without the table's columns.
ID_AT, STATE_AT = LINE_COLUMNS.index(ITEM.c.id), LINE_COLUMNS.index(ITEM.c.state)

FETCH = 5000  # rows per driver fetch (and per server round trip on PostgreSQL)


def result_text(result: dict[str, Any] | None) -> str | None:
    """`result_json` for an answer: all of it but the body."""
    if result is None:
        return None
    if "body" not in result:
        return json.dumps(result)
    return json.dumps({k: v for k, v in result.items() if k != "body"})


def body_text(result: dict[str, Any] | None) -> str | None:
    """`response_body` for an answer: its body as the output line spells it."""
    if result is None or "body" not in result:
        return None
    text = json.dumps(result["body"], ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (an escape the vendor sent) cannot be stored as UTF-8: escape all.
            text = json.dumps(result["body"])
    return text


def full_result(result_json: str | None, response_body: str | None) -> dict[str, Any] | None:
    """The whole answer, body included, from either storage shape."""
    if result_json is None:
        return None
    result = json.loads(result_json)
    if response_body is not None:
        result["body"] = json.loads(response_body)
    return result


def _body_bytes(dialect: str) -> Any:
    """`response_body` as its UTF-8 bytes: the output line splices it in as read, undecoded."""
    if dialect == "postgresql":  # not a cast to bytea: that reads backslashes as escapes
        return func.convert_to(ITEM.c.response_body, literal_column("'UTF8'"))
    return cast(ITEM.c.response_body, LargeBinary)  # SQLite: the stored bytes as they are


def line_rows(conn: Connection, batch_id: str) -> Iterator[list[tuple[Any, ...]]]:
    """A batch's `LINE_COLUMNS` rows in input order, the body as UTF-8 bytes, in blocks of plain
    tuples, read through the driver inside `conn`'s transaction: SQLAlchemy's per-row processing
    cost more than building the line. On PostgreSQL a server-side cursor (binary), so a million
    rows are never all in memory."""
    body = _body_bytes(conn.dialect.name)
    columns = [body if c is ITEM.c.response_body else c for c in LINE_COLUMNS]
    stmt = select(*columns).where(ITEM.c.batch_id == batch_id).order_by(ITEM.c.idx)
    compiled = stmt.compile(dialect=conn.dialect)
    params: Any = compiled.params
    if compiled.positional:
        params = tuple(params[k] for k in compiled.positiontup or ())
    if not conn.in_transaction():
        conn.begin()  # through SQLAlchemy, so its begin hooks (read-only settings) run
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    if conn.dialect.name == "postgresql":
        # Binary results: integers and the body's bytes arrive as they are, not as text to
        # parse (a third less client CPU reading rows); text and booleans read the same.
        cur = dbapi.cursor(name="batchgate_line_rows", binary=True)  # type: ignore[call-arg]
    else:
        cur = dbapi.cursor()
    try:
        cur.execute(str(compiled), params)
        while rows := cur.fetchmany(FETCH):
            yield rows
    finally:
        cur.close()
