"""Schema migrations on the test database's backend (SQLite here, PostgreSQL in CI's second run):
the migrations build exactly the models, a pre-migration database is stamped and kept, a new
migration runs on an existing database, a newer database is refused, concurrent starts migrate
once."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel
from typer.testing import CliRunner

from batchgate.broker import free_port
from batchgate.cli import app as cli
from batchgate.cli.db_cmds import migrate_or_exit
from batchgate.settings import Settings
from batchgate.store import migrate
from batchgate.store.db import make_engine
from tests.conftest import REPO
from tests.release_fixture import expected, restore

pytestmark = pytest.mark.storage

THROWAWAY = """
from alembic import op
import sqlalchemy as sa

revision = "9999_throwaway"
down_revision = {head!r}


def upgrade() -> None:
    with op.batch_alter_table("item") as batch_op:
        batch_op.add_column(sa.Column("note", sa.String(), nullable=False, server_default="n/a"))
        batch_op.create_index("ix_item_note", ["note"])


def downgrade() -> None:
    with op.batch_alter_table("item") as batch_op:
        batch_op.drop_index("ix_item_note")
        batch_op.drop_column("note")
"""


@pytest.fixture
def engine(database_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _count(engine, table: str) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_the_migrations_build_exactly_the_models(engine) -> None:  # type: ignore[no-untyped-def]
    """What CI relies on to catch a model change shipped without its migration."""
    st = migrate.upgrade(engine)
    assert st.current == st.head
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, SQLModel.metadata) == []


def test_a_release_0_1_0_database_is_stamped_and_kept(  # type: ignore[no-untyped-def]
    engine, database_url: str, tmp_path: Path
) -> None:
    want = expected(restore(database_url, tmp_path))
    rows = {t: _count(engine, t) for t in ("file", "batch", "item", "attempt")}
    assert rows["batch"] == len(want) and rows["attempt"] > 0
    before = migrate.state(engine)
    assert before.current is None and before.legacy and before.summary.startswith("unversioned")
    after = migrate.upgrade(engine)
    assert after.current == after.head
    assert {t: _count(engine, t) for t in rows} == rows  # stamped, not recreated
    with engine.connect() as conn:
        ids = set(conn.execute(text("SELECT id FROM batch")).scalars())
        assert ids == {b["id"] for b in want.values()}
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, SQLModel.metadata) == []


def _with_throwaway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, folder)
    head = migrate.script_directory().get_current_head()
    (folder / "versions" / "9999_throwaway.py").write_text(THROWAWAY.format(head=head))
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", folder)


def test_a_new_migration_adds_a_column_to_a_database_in_use(  # type: ignore[no-untyped-def]
    engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    restore(database_url, tmp_path)
    migrate.upgrade(engine)
    items = _count(engine, "item")
    _with_throwaway(tmp_path, monkeypatch)
    assert migrate.state(engine).summary == "behind: needs upgrade"
    assert migrate.upgrade(engine).current == "9999_throwaway"
    assert "note" in {c["name"] for c in inspect(engine).get_columns("item")}
    assert "ix_item_note" in {i["name"] for i in inspect(engine).get_indexes("item")}
    with engine.connect() as conn:
        notes = conn.execute(text("SELECT DISTINCT note FROM item")).scalars().all()
    assert _count(engine, "item") == items and notes == ["n/a"]  # rows kept, column filled


def test_code_older_than_the_database_refuses_to_start(  # type: ignore[no-untyped-def]
    engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    real = migrate.MIGRATIONS_DIR
    _with_throwaway(tmp_path, monkeypatch)
    migrate.upgrade(engine)  # a newer batchgate migrated it
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", real)  # then the old one starts again
    assert migrate.state(engine).summary == "newer than this batchgate"
    with pytest.raises(migrate.SchemaTooNew, match="9999_throwaway"):
        migrate.upgrade(engine)
    with pytest.raises(typer.Exit) as stopped:
        migrate_or_exit(Settings(data_dir=tmp_path, database_url=database_url))
    assert stopped.value.exit_code == 2
    err = capsys.readouterr().err
    assert "refusing to start" in err and "a newer batchgate has migrated it" in err
    result = CliRunner().invoke(cli, ["db", "current", "--database-url", database_url])
    assert result.exit_code == 3 and "newer than this batchgate" in result.output


def test_a_celery_worker_refuses_a_newer_database_however_started(  # type: ignore[no-untyped-def]
    engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_throwaway(tmp_path, monkeypatch)
    migrate.upgrade(engine)
    env = {
        **os.environ,
        "BATCHGATE_DATABASE_URL": database_url,
        "BATCHGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # never reached
        "BATCHGATE_CONFIG": str(REPO / "samples" / "config.simulator.yaml"),
    }
    argv = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "openai", "-c", "1"]
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "refusing to start" in done.stderr and "9999_throwaway" in done.stderr


def test_db_commands_say_where_the_database_stands(database_url: str) -> None:
    run = CliRunner().invoke
    fresh = run(cli, ["db", "current", "--database-url", database_url])
    assert fresh.exit_code == 0 and "revision: (none)" in fresh.output
    assert "status: empty" in fresh.output
    up = run(cli, ["db", "upgrade", "--database-url", database_url])
    head = migrate.script_directory().get_current_head()
    assert up.exit_code == 0 and f"-> {head}" in up.output
    again = run(cli, ["db", "upgrade", "--database-url", database_url])
    assert again.exit_code == 0 and f"already at {head}" in again.output
    now = run(cli, ["db", "current", "--database-url", database_url])
    assert f"revision: {head}" in now.output and "status: up to date" in now.output


def _start(url: str, barrier) -> str | None:  # type: ignore[no-untyped-def]
    engine = make_engine(url)
    barrier.wait(60)  # every process is imported and connected: start at once
    return migrate.upgrade(engine).current


def test_processes_starting_together_migrate_once(engine, database_url: str) -> None:  # type: ignore[no-untyped-def]
    n = 4
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(n) as pool:
        barrier = manager.Barrier(n)
        revisions = pool.starmap(_start, [(database_url, barrier)] * n)
    head = migrate.script_directory().get_current_head()
    assert revisions == [head] * n
    assert _count(engine, "alembic_version") == 1
