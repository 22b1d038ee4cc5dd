"""Schema migrations: bring a database to this code's schema (Alembic, `store/migrations/`).

Every process that opens the database calls `upgrade` at start. One of them migrates while
holding a lock (PostgreSQL: an advisory lock; SQLite: the write lock), the others wait for it and
then find nothing to do. A database made by `create_all` before migrations existed is recognised
and stamped at the baseline, never recreated. A database stamped with a revision this code does
not know was migrated by a newer batchgate: `SchemaTooNew` refuses it rather than misread it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BASELINE = "0001_baseline"
# The tables of the baseline: their presence on an unstamped database means `create_all` made it.
LEGACY_TABLES = frozenset({"file", "batch", "item", "attempt"})
# pg_advisory_xact_lock key: "batchgate" in ASCII, truncated to fit a bigint.
_PG_LOCK_KEY = 0x6261746368676174
_LOCKED_RETRY_S = 0.5

log = logging.getLogger(__name__)
# Alembic says which dialect it uses every time a context opens; `upgrade` logs what it did.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer batchgate than this one."""


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # the revision stamped on the database; None when unstamped
    head: str  # the newest revision this code knows
    known: bool  # whether this code knows `current`
    legacy: bool  # unstamped, but holds the tables `create_all` made before migrations

    @property
    def summary(self) -> str:
        if self.current is None:
            return "unversioned (pre-migration tables)" if self.legacy else "empty"
        if not self.known:
            return "newer than this batchgate"
        return "up to date" if self.current == self.head else "behind: needs upgrade"


def script_directory() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS_DIR))


def state(engine: Engine) -> SchemaState:
    """Where the database stands, read without taking the migration lock."""
    with engine.connect() as conn:
        return _state(conn)


def upgrade(engine: Engine, wait_s: float = 600.0) -> SchemaState:
    """Migrate the database to this code's head (a no-op when it is there already).

    Raises `SchemaTooNew` when the database is ahead of this code.
    """
    before = state(engine)
    _refuse_newer(engine, before)
    if before.current == before.head:
        return before
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return _upgrade_locked(engine)
        except OperationalError as exc:
            # SQLite: another process holds the write lock past the busy timeout, migrating.
            if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(_LOCKED_RETRY_S)


def _upgrade_locked(engine: Engine) -> SchemaState:
    # engine.begin() takes SQLite's write lock up front (BEGIN IMMEDIATE, see store.db); on
    # PostgreSQL the advisory lock is held until this transaction ends. DDL is transactional on
    # both, so a crash mid-migration leaves the database as it was.
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        now = _state(conn)
        _refuse_newer(engine, now)
        if now.current == now.head:
            return now  # another process migrated while this one waited
        cfg = _alembic_config(conn)
        if now.current is None and now.legacy:
            command.stamp(cfg, BASELINE)
            log.info("database made before migrations: stamped at %s", BASELINE)
        command.upgrade(cfg, "head")
        after = _state(conn)
        start = now.current or (BASELINE if now.legacy else "empty")
        log.info("database schema upgraded: %s -> %s", start, after.current)
        return after


def stamp_only(engine: Engine, revision: str) -> None:
    """Record `revision` without running anything (operators recovering by hand)."""
    with engine.begin() as conn:
        command.stamp(_alembic_config(conn), revision)


def _alembic_config(conn: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    return cfg


def _state(conn: Connection) -> SchemaState:
    script = script_directory()
    head = script.get_current_head()
    assert head is not None, "the migrations folder has no revision"
    heads = MigrationContext.configure(conn).get_current_heads()
    current = heads[0] if heads else None
    known = current is None or current in {s.revision for s in script.walk_revisions()}
    legacy = current is None and set(inspect(conn).get_table_names()) >= LEGACY_TABLES
    return SchemaState(current=current, head=head, known=known, legacy=legacy)


def _refuse_newer(engine: Engine, st: SchemaState) -> None:
    if st.known:
        return
    where = engine.url.render_as_string(hide_password=True)
    raise SchemaTooNew(
        f"the database at {where} is at schema revision {st.current!r}, which this batchgate "
        f"does not know (its newest is {st.head!r}): a newer batchgate has migrated it. Run the "
        "newer batchgate, or restore the backup taken before the upgrade."
    )
