"""What every client command shares: the connection options, the client, and one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.text import Text

from batchgate.client import Client, ClientError
from batchgate.settings import get_settings

# Exit codes of client commands (documented in `submit --help`).
EXIT_ERROR = 1  # the request failed: unreachable, refused key, no such batch, ...
EXIT_BATCH_NOT_COMPLETED = 3  # the batch ended failed, expired or cancelled
EXIT_LINES_FAILED = 4  # the batch completed, but some of its lines are in the error file

console = Console()
err_console = Console(stderr=True)

API_BASE = typer.Option(
    None, "--api-base", help="API URL (default: BATCHGATE_API_BASE or http://127.0.0.1:8000)."
)
API_KEY = typer.Option(
    None, "--api-key", help="API key (default: BATCHGATE_API_KEY).", show_default=False
)


def client(api_base: str | None, api_key: str | None) -> Client:
    s = get_settings()
    return Client(api_base or s.api_base, api_key or s.api_key)


def fail(message: object, code: int = EXIT_ERROR) -> typer.Exit:
    """Print one error line on stderr; returns the Exit to raise."""
    # As Text, not markup: a message may hold brackets (a JSON path, a model name).
    err_console.print(Text.assemble(("error:", "red"), " ", str(message)), soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def expected_failures() -> Iterator[None]:
    """A failed request (unreachable API, 401, 404, 409, a refused file) ends the command with
    one line and a non-zero exit, never a traceback."""
    try:
        yield
    except ClientError as exc:
        raise fail(exc) from None
