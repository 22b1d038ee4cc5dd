"""`batchgate submit`: upload a file, create a batch, optionally wait and fetch its results."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer

from batchgate.cli.common import (
    API_BASE,
    API_KEY,
    EXIT_BATCH_NOT_COMPLETED,
    EXIT_LINES_FAILED,
    client,
    console,
    expected_failures,
)
from batchgate.cli.progress import summary_line, summary_table, wait_with_progress
from batchgate.client import Client

SHOWN_LINE_ERRORS = 20


def _first_url(path: Path) -> str:
    with open(path, "rb") as fp:
        for raw in fp:
            if raw.strip():
                try:
                    return json.loads(raw).get("url", "/v1/chat/completions")
                except (ValueError, AttributeError):
                    break
    return "/v1/chat/completions"


def errors_path(output: Path) -> Path:
    """Where `-o FILE` puts the error file: FILE.errors.jsonl (FILE's .jsonl dropped)."""
    stem = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return output.with_name(stem + ".errors.jsonl")


def submit(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="OpenAI batch JSONL file."),
    model: str | None = typer.Option(None, help="Run every line on this model alias."),
    fallback: list[str] = typer.Option(
        [],
        "--fallback",
        help="Fallback model alias (repeatable, in order); replaces the config's fallbacks.",
    ),
    max_cost: Decimal | None = typer.Option(
        None, "--max-cost", help="Stop new calls once this many USD are spent."
    ),
    cache: bool | None = typer.Option(
        None,
        "--cache/--no-cache",
        help="Serve lines answered before from the response cache, and cache this batch's "
        "answers (default: the server config's cache.default).",
    ),
    vendor_batch: bool | None = typer.Option(
        None,
        "--vendor-batch/--online",
        help="Offer lines to their vendors' own batch APIs first (about half price, up to "
        "24 hours); --online runs every line online. Default: the server's config.",
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Show progress until the batch ends, then a summary."
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="With --wait: write the results here, and failed lines to FILE.errors.jsonl.",
    ),
    api_base: str | None = API_BASE,
    api_key: str | None = API_KEY,
) -> None:
    """Upload FILE and create a batch.

    With --wait the exit code says how it ended: 0 every line succeeded, 3 the batch ended
    failed, expired or cancelled, 4 it completed but some lines failed (see the error file),
    1 a request failed.

    Example:  batchgate submit samples/eval.jsonl --fallback claude-haiku --wait -o out.jsonl
    Example:  batchgate submit samples/eval.jsonl --vendor-batch --wait
    """
    with expected_failures(), client(api_base, api_key) as c:
        f = c.upload(file)
        batch = c.create_batch(
            f["id"],
            _first_url(file),
            model=model,
            fallbacks=list(fallback),
            max_cost_usd=str(max_cost) if max_cost is not None else None,
            cache=cache,
            vendor_batch=vendor_batch,
        )
        console.print(f"batch [bold]{batch['id']}[/bold] created ({batch['status']})")
        if not wait:
            return
        batch = wait_with_progress(lambda: c.batch(batch["id"]), console)
        _report(c, batch, output)
    if batch["status"] != "completed":
        raise typer.Exit(EXIT_BATCH_NOT_COMPLETED)
    if batch["request_counts"]["failed"]:
        raise typer.Exit(EXIT_LINES_FAILED)


def _report(c: Client, batch: dict[str, Any], output: Path | None) -> None:
    line_errors = (batch.get("errors") or {}).get("data") or []
    if line_errors:  # the file was refused: nothing ran, the line errors say why
        console.print(f"batch {batch['id']} {batch['status']}: the file was refused")
        for e in line_errors[:SHOWN_LINE_ERRORS]:
            console.print(f"  line {e.get('line')}: {e['code']}: {e['message']}", soft_wrap=True)
        if len(line_errors) > SHOWN_LINE_ERRORS:
            console.print(f"  ... and {len(line_errors) - SHOWN_LINE_ERRORS} more")
        return
    console.print(summary_table(batch))
    console.print(summary_line(batch), soft_wrap=True)
    if output is None:
        return
    if batch.get("output_file_id"):
        c.download(batch["output_file_id"], output)
        console.print(f"results written to {output}", soft_wrap=True)
    if batch.get("error_file_id"):
        errors = errors_path(output)
        c.download(batch["error_file_id"], errors)
        console.print(
            f"{batch['request_counts']['failed']} failed lines written to {errors}", soft_wrap=True
        )


def register(app: typer.Typer) -> None:
    app.command()(submit)
