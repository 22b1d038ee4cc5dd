"""The `batchgate` command: a thin Typer shell over the library and the HTTP API."""

from __future__ import annotations

import logging

import typer

from batchgate import redaction
from batchgate.cli import client_cmds, demo, estimate, servers, submit
from batchgate.cli.cache_cmds import cache_app
from batchgate.cli.db_cmds import db_app
from batchgate.cli.deploy_cmds import kubernetes

app = typer.Typer(
    name="batchgate",
    help=(
        "Run large LLM batches across vendors: OpenAI-compatible Batch API, per-vendor workers, "
        "retries, fallbacks and exact cost.\n\n"
        "Try it with no keys and no servers:  batchgate demo"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
servers.register(app)
submit.register(app)
client_cmds.register(app)
estimate.register(app)
demo.register(app)
app.add_typer(db_app, name="db")
app.add_typer(cache_app, name="cache")
app.command()(kubernetes)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Key-shaped strings are masked from the first record on; commands that load a config add
    # the config's own secrets.
    redaction.install()
    # One line per HTTP request is noise next to a progress bar.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    app()
