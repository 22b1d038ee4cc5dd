"""`batchgate db`: where the database schema stands, and upgrading it by hand."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from sqlalchemy.exc import OperationalError

from batchgate.settings import Settings, get_settings
from batchgate.store import migrate
from batchgate.store.db import make_engine

db_app = typer.Typer(
    help=(
        "The database schema. Every server process upgrades it at start (one at a time, under a "
        "lock); these commands are for operators who migrate by hand.\n\n"
        "Examples:  batchgate db current --data-dir .batchgate\n\n"
        "           BATCHGATE_DATABASE_URL=postgresql://... batchgate db upgrade"
    ),
    no_args_is_help=True,
)

DATA_DIR_HELP = "Data directory whose SQLite database to use (when no --database-url is given)."
URL_HELP = "Database URL (default: BATCHGATE_DATABASE_URL, else SQLite under the data dir)."


def settings_for(data_dir: Path | None, database_url: str | None) -> Settings:
    overrides: dict[str, object] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url is not None:
        overrides["database_url"] = database_url
    return get_settings().model_copy(update=overrides)


# A server started while its database is briefly unreachable (its host just back on the
# network, a failover) waits this long for it, instead of exiting at the first refusal.
START_WAIT_S = 60.0
RETRY_S = 1.0


def migrate_or_exit(settings: Settings, wait_s: float = START_WAIT_S) -> None:
    """Bring the database to this code's schema before a server starts; refuse one that a
    newer batchgate has migrated, with a message instead of a traceback. An unreachable
    database is tried again for `wait_s` seconds."""
    engine = make_engine(settings.resolved_database_url())
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                migrate.upgrade(engine)
                return
            except migrate.SchemaTooNew as exc:
                typer.secho(f"refusing to start: {exc}", fg="red", err=True)
                raise typer.Exit(2) from None
            except OperationalError as exc:
                reason = str(exc.orig or exc).splitlines()[0]  # names the host, never the password
                if time.monotonic() > deadline:
                    typer.secho(f"refusing to start: the database is unreachable ({reason})",
                                fg="red", err=True)  # fmt: skip
                    raise typer.Exit(1) from None
                typer.secho(f"waiting for the database: {reason}", err=True)
                time.sleep(RETRY_S)
    finally:
        engine.dispose()


@db_app.command()
def current(
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    database_url: str | None = typer.Option(None, help=URL_HELP),
) -> None:
    """Say which schema revision the database is at, and whether it needs an upgrade."""
    engine = make_engine(settings_for(data_dir, database_url).resolved_database_url())
    try:
        st = migrate.state(engine)
    finally:
        engine.dispose()
    typer.echo(f"database: {engine.url.render_as_string(hide_password=True)}")
    typer.echo(f"revision: {st.current or '(none)'}")
    typer.echo(f"code head: {st.head}")
    typer.echo(f"status: {st.summary}")
    if not st.known:
        raise typer.Exit(3)


@db_app.command()
def upgrade(
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    database_url: str | None = typer.Option(None, help=URL_HELP),
) -> None:
    """Migrate the database to this batchgate's schema (safe while other processes run)."""
    engine = make_engine(settings_for(data_dir, database_url).resolved_database_url())
    try:
        before = migrate.state(engine)
        after = migrate.upgrade(engine)
    except migrate.SchemaTooNew as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    if before.current == after.current:
        typer.echo(f"already at {after.current}")
    else:
        typer.echo(f"upgraded {before.current or '(' + before.summary + ')'} -> {after.current}")
