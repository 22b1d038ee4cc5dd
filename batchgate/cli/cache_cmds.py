"""`batchgate cache`: what the response cache holds, and emptying it. Both talk to the database
directly (as `batchgate db` does), so they work with no server running."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table
from sqlalchemy.engine import Engine

from batchgate.cli.common import console, fail
from batchgate.cli.db_cmds import DATA_DIR_HELP, URL_HELP, settings_for
from batchgate.config import CacheSettings, load_config
from batchgate.errors import ConfigError
from batchgate.store import cache as store
from batchgate.store import migrate
from batchgate.store.db import make_engine

cache_app = typer.Typer(
    help=(
        "The response cache (batches created with `cache: true`): answers kept per tenant and "
        "reused by later batches for the same request.\n\n"
        "Examples:  batchgate cache stats --data-dir .batchgate\n\n"
        "           batchgate cache clear --tenant team-a"
    ),
    no_args_is_help=True,
)

CONFIG_HELP = "Config whose `batchgate_settings.cache` TTL applies (default: BATCHGATE_CONFIG)."


def _cache_settings(config: Path | None) -> CacheSettings:
    if config is None:
        return CacheSettings()
    try:
        return load_config(config).cache
    except ConfigError as exc:
        raise fail(exc) from None


def _upgrade(engine: Engine) -> None:
    """As every server does at start: a database from before the cache gets its table."""
    try:
        migrate.upgrade(engine)
    except migrate.SchemaTooNew as exc:
        raise fail(exc, 2) from None


def _age(now: float, at: float | None) -> str:
    if at is None:
        return "-"
    seconds = max(0, int(now - at))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@cache_app.command()
def stats(
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    database_url: str | None = typer.Option(None, help=URL_HELP),
    config: Path | None = typer.Option(None, help=CONFIG_HELP),
) -> None:
    """Entries, size and ages per tenant; `expired` entries are past the TTL (never served,
    dropped by the reconciler's next round)."""
    settings = settings_for(data_dir, database_url)
    limits = _cache_settings(config or settings.config)
    engine = make_engine(settings.resolved_database_url())
    now = time.time()
    try:
        _upgrade(engine)
        rows = store.stats(engine, now - limits.ttl_seconds)
    finally:
        engine.dispose()
    table = Table(title="response cache", show_footer=True)
    table.add_column("tenant", footer="total")
    table.add_column("entries", justify="right", footer=str(sum(r.entries for r in rows)))
    table.add_column("bytes", justify="right", footer=str(sum(r.bytes for r in rows)))
    table.add_column("expired", justify="right", footer=str(sum(r.expired for r in rows)))
    table.add_column("oldest", justify="right")
    table.add_column("newest", justify="right")
    for r in rows:
        table.add_row(
            r.tenant,
            str(r.entries),
            str(r.bytes),
            str(r.expired),
            _age(now, r.oldest),
            _age(now, r.newest),
        )
    console.print(table)
    console.print(
        f"ttl {limits.ttl_seconds:g}s, at most {limits.max_entries} entries (oldest go first)"
    )


@cache_app.command()
def clear(
    tenant: str | None = typer.Option(None, help="Clear only this tenant's entries."),
    data_dir: Path | None = typer.Option(None, help=DATA_DIR_HELP),
    database_url: str | None = typer.Option(None, help=URL_HELP),
) -> None:
    """Delete every cached answer (or one tenant's): the next caching batches call the vendor."""
    engine = make_engine(settings_for(data_dir, database_url).resolved_database_url())
    try:
        _upgrade(engine)
        n = store.clear(engine, tenant)
    finally:
        engine.dispose()
    typer.echo(f"cleared {n} cached answers" + (f" of tenant {tenant}" if tenant else ""))
