"""Engine creation: SQLite in WAL mode, or PostgreSQL by URL. The schema is `store.migrate`'s."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import create_engine

from batchgate.store import models  # noqa: F401  (registers the tables)

READ_ONLY = "batchgate_read_only"  # execution option set by `reading`


def normalise_url(url: str) -> str:
    # psycopg 3 is the driver we ship; accept the URLs people paste.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# The idle-transaction timeout does not cover a client that died between the statements of one
# extended-protocol exchange (its server session waits for the Sync, holding its locks, and
# counts as active). The server's TCP keepalive does: a silent peer is dropped in about a minute,
# not the operating system's two hours; unacknowledged data gives up after a minute too.
_PG_DEAD_PEER_OPTIONS = (
    "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"
    " -c tcp_user_timeout=60000"
)


def make_engine(
    url: str, *, idle_transaction_seconds: float = 60.0, sqlite_cache_kib: int | None = None
) -> Engine:
    """`idle_transaction_seconds` (PostgreSQL): how long a writer's transaction may sit idle
    before the server ends it. A host that dies mid-transaction without closing its socket
    (power cut, partition) would otherwise keep its row locks until TCP keepalive notices,
    hours later, and every other writer to that batch would wait on them.

    `sqlite_cache_kib` (SQLite): each pooled connection's page cache (SQLite's default is
    2 MiB). The API sets it small: every connection that serves a status poll fills its own,
    and the OS page cache holds the same pages anyway."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            if sqlite_cache_kib is not None:
                cur.execute(f"PRAGMA cache_size=-{int(sqlite_cache_kib)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            # Writers take the write lock up front: claims read-then-write and must not
            # interleave. Reads (`reading`) take a snapshot and never wait for that lock, so a
            # status poll is not blocked by a long ingest.
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        # Let our BEGIN IMMEDIATE take effect instead of pysqlite's implicit BEGIN.
        @event.listens_for(engine, "connect")
        def _sqlite_autocommit(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None

        return engine
    # 0 sends no startup options at all, for a pooler that refuses them (PgBouncer): then set
    # these on the server instead.
    idle_ms = int(idle_transaction_seconds * 1000)
    options = f"-c idle_in_transaction_session_timeout={idle_ms} {_PG_DEAD_PEER_OPTIONS}"
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        connect_args={"options": options} if idle_ms > 0 else {},
    )

    @event.listens_for(engine, "begin")
    def _pg_begin(conn):  # type: ignore[no-untyped-def]
        # Reads hold no row locks, and a streamed download idles as long as its client is slow.
        if idle_ms > 0 and conn.get_execution_options().get(READ_ONLY):
            # On the driver's own cursor: the connection's options may ask for a server-side
            # cursor (`yield_per`), and a SET cannot be DECLAREd as one.
            with conn.connection.dbapi_connection.cursor() as cur:
                cur.execute("SET LOCAL idle_in_transaction_session_timeout = 0")

    return engine


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only (`engine.begin()` is for writes). On SQLite its transaction
    is deferred: it reads a snapshot and never queues behind a writer."""
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        yield conn


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


_DRIVER_SQL: dict[tuple[Any, str], tuple[str, Callable[[dict[str, Any]], Any] | None]] = {}


def executemany(conn: Connection, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """One statement over many parameter sets, at the driver: SQLAlchemy's per-row parameter
    processing was most of the cost of recording outcomes. The values are plain ints, floats,
    strings, bools and None, which both drivers take as they are."""
    key = (stmt, conn.dialect.name)  # the statements are module constants: compiled once each
    sql = _DRIVER_SQL.get(key)
    if sql is None:
        compiled = stmt.compile(dialect=conn.dialect)
        sql = _DRIVER_SQL[key] = (str(compiled), _positional(compiled))
    text, values = sql
    conn.exec_driver_sql(text, rows if values is None else [values(r) for r in rows])


def _positional(compiled: Any) -> Callable[[dict[str, Any]], Any] | None:
    """A row's values in the compiled statement's order (None: the driver takes the dict).
    One C-level itemgetter per statement: a generator per row cost as much as the write."""
    if not compiled.positional:
        return None
    order = tuple(compiled.positiontup)
    if len(order) == 1:  # itemgetter of one key returns the value, not a 1-tuple
        return lambda row: (row[order[0]],)
    return itemgetter(*order)
