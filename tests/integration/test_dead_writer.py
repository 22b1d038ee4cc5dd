"""A writer that dies mid-transaction must not hold its locks for long. On PostgreSQL a host cut
off the network never closes its socket, so the server ends its idle transaction after
`idle_transaction_seconds`; on SQLite (one host) the operating system releases a dead process's
file lock. Either way the next writer to the same batch row gets through."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from batchgate.store import migrate
from batchgate.store.db import is_sqlite, make_engine, reading
from batchgate.store.models import Batch

pytestmark = pytest.mark.storage

# The SQLite writer: takes the write lock, says so, then waits to be killed.
_SQLITE_WRITER = """
import sys, time
from sqlalchemy import text
from batchgate.store.db import make_engine
engine = make_engine(sys.argv[1])
with engine.begin() as conn:
    conn.execute(text("UPDATE batch SET priority = 1 WHERE id = 'b1'"))
    print("locked", flush=True)
    time.sleep(600)
"""


def _seed(engine) -> None:  # type: ignore[no-untyped-def]
    migrate.upgrade(engine)
    batch = Batch(id="b1", tenant="t", input_file_id="f", endpoint="/v1/chat/completions",
                  status="in_progress", created_at=0, expires_at=0)  # fmt: skip
    with Session(engine) as session:
        session.add(batch)
        session.commit()


def test_a_writer_that_dies_holding_a_row_lock_does_not_stall_the_others(
    database_url: str,
) -> None:
    engine = make_engine(database_url, idle_transaction_seconds=1)
    _seed(engine)
    if is_sqlite(engine):
        proc = subprocess.Popen(
            [sys.executable, "-c", _SQLITE_WRITER, database_url],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        with engine.begin() as conn:
            conn.execute(text("UPDATE batch SET priority = 2 WHERE id = 'b1'"))
    else:
        # The stalled writer: holds the batch row and never speaks again, as a host cut off
        # the network would (its socket stays open).
        stalled = engine.connect()
        # A peer that died mid-statement is not idle: the server's keepalive finds it instead.
        keys = ("tcp_keepalives_idle", "tcp_user_timeout", "idle_in_transaction_session_timeout")
        show = {k: stalled.execute(text(f"SHOW {k}")).scalar() for k in keys}
        assert show == {"tcp_keepalives_idle": "30", "tcp_user_timeout": "60000",
                        "idle_in_transaction_session_timeout": "1s"}  # fmt: skip
        stalled.commit()
        stalled.begin()
        stalled.execute(text("UPDATE batch SET priority = 1 WHERE id = 'b1'"))
        other = make_engine(database_url)
        t0 = time.monotonic()
        with other.begin() as conn:
            conn.execute(text("SET LOCAL statement_timeout = '30s'"))
            conn.execute(text("UPDATE batch SET priority = 2 WHERE id = 'b1'"))
        waited = time.monotonic() - t0
        assert waited < 25, f"the second writer waited {waited:.1f}s"
        with pytest.raises(DBAPIError):  # the server ended the stalled transaction
            stalled.execute(text("SELECT 1"))
        stalled.invalidate()
        stalled.close()
        other.dispose()
    with reading(engine) as conn:
        assert conn.execute(text("SELECT priority FROM batch WHERE id = 'b1'")).scalar() == 2
    engine.dispose()


def test_a_slow_reader_is_not_cut_off(database_url: str) -> None:
    """Reads hold no row locks; a streamed download may idle as long as its client is slow."""
    engine = make_engine(database_url, idle_transaction_seconds=0.2)
    _seed(engine)
    with reading(engine) as conn:
        assert conn.execute(text("SELECT count(*) FROM batch")).scalar() == 1
        time.sleep(0.6)  # idle inside the read transaction, three times the writers' limit
        assert conn.execute(text("SELECT count(*) FROM batch")).scalar() == 1
    # Streamed reads (a server-side cursor on PostgreSQL) too, as downloads and results are.
    with reading(engine) as conn:
        rows = conn.execution_options(yield_per=1).execute(text("SELECT id FROM batch"))
        assert [r.id for r in rows] == ["b1"]
    engine.dispose()


def test_zero_sends_no_session_options(database_url: str) -> None:
    """Behind a pooler that refuses startup options (PgBouncer) the server's own settings rule."""
    engine = make_engine(database_url, idle_transaction_seconds=0)
    migrate.upgrade(engine)
    with reading(engine) as conn:
        assert conn.execute(text("SELECT count(*) FROM batch")).scalar() == 0
        if not is_sqlite(engine):
            assert conn.execute(text("SHOW tcp_keepalives_idle")).scalar() != "30"
    engine.dispose()
