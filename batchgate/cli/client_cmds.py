"""Client commands against a running API: status, list, download, results, cancel."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

from batchgate.cli.common import API_BASE, API_KEY, client, console, expected_failures, fail
from batchgate.cli.progress import TERMINAL, summary_line, summary_table, vendor_jobs_table

FOLLOW_INTERVAL = 1.0  # seconds between polls of `results --follow`


def status(
    batch_id: str,
    api_base: str | None = API_BASE,
    api_key: str | None = API_KEY,
    as_json: bool = typer.Option(False, "--json", help="Print the batch object as JSON."),
) -> None:
    """Show a batch's status, counts and cost.

    Example:  batchgate status batch_0123abcd
    """
    with expected_failures(), client(api_base, api_key) as c:
        batch = c.batch(batch_id)
    if as_json:
        console.print_json(json.dumps(batch))
    else:
        console.print(summary_table(batch))
        if (jobs := vendor_jobs_table(batch)) is not None:
            console.print(jobs)
        console.print(summary_line(batch), soft_wrap=True)


def _compact(n: int) -> str:
    if n < 100_000:
        return str(n)
    return f"{n / 1000:.0f}k" if n < 1_000_000 else f"{n / 1_000_000:.1f}M"


def _usd(text: str) -> str:
    try:
        return f"{float(text):.4f}"
    except ValueError:
        return text


# id (38) + status + done/total + failed + USD: 80 columns.
LIST_ROW = "{:<38} {:<11} {:>11} {:>6} {:>10}"


def list_(
    limit: int = typer.Option(20, help="How many, newest first."),
    api_base: str | None = API_BASE,
    api_key: str | None = API_KEY,
) -> None:
    """List recent batches, one 80-column line each.

    Example:  batchgate list --limit 5
    """
    with expected_failures(), client(api_base, api_key) as c:
        page = c.batches(limit=limit)
    print(LIST_ROW.format("ID", "STATUS", "DONE/TOTAL", "FAILED", "USD"))
    for b in page["data"]:
        rc = b["request_counts"]
        done = f"{_compact(rc['completed'])}/{_compact(rc['total'])}"
        print(
            LIST_ROW.format(b["id"], b["status"], done, _compact(rc["failed"]), _usd(b["cost_usd"]))
        )


def download(
    batch_id: str,
    output: Path = typer.Option(Path("results.jsonl"), "-o", "--output", help="Where to write."),
    errors: bool = typer.Option(False, "--errors", help="Download the error file instead."),
    api_base: str | None = API_BASE,
    api_key: str | None = API_KEY,
) -> None:
    """Download a finished batch's results (or its error file with --errors).

    Example:  batchgate download batch_0123abcd -o results.jsonl
    """
    with expected_failures(), client(api_base, api_key) as c:
        batch = c.batch(batch_id)
        if batch["status"] not in TERMINAL:
            raise fail(
                f"batch {batch_id} is {batch['status']}: its files are written when it ends; "
                f"`batchgate results {batch_id}` shows the lines finished so far"
            )
        fid = batch["error_file_id"] if errors else batch["output_file_id"]
        if not fid:
            which = "error" if errors else "output"
            raise fail(f"batch {batch_id} is {batch['status']} and has no {which} file")
        n = c.download(fid, output)
    console.print(f"wrote {n} bytes to {output}")


def results(
    batch_id: str,
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Keep printing lines as they finish; exit when it ends."
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Append the lines to this file instead of printing them."
    ),
    api_base: str | None = API_BASE,
    api_key: str | None = API_KEY,
) -> None:
    """The lines a batch has finished so far (succeeded and failed), as JSONL, while it runs.

    Example:  batchgate results batch_0123abcd --follow -o live.jsonl
    """
    sink: Any = open(output, "ab") if output is not None else sys.stdout.buffer  # noqa: SIM115
    try:
        with expected_failures(), client(api_base, api_key) as c:
            cursor, status_ = c.results(batch_id, None, sink.write)
            sink.flush()
            while follow and status_ not in TERMINAL:
                time.sleep(FOLLOW_INTERVAL)  # a poll interval, as `tail -f` has
                cursor, status_ = c.results(batch_id, cursor, sink.write)
                sink.flush()
    finally:
        if output is not None:
            sink.close()


def cancel(batch_id: str, api_base: str | None = API_BASE, api_key: str | None = API_KEY) -> None:
    """Cancel a batch: no new calls, in-flight ones finish, the rest end as cancelled.

    Example:  batchgate cancel batch_0123abcd
    """
    with expected_failures(), client(api_base, api_key) as c:
        batch = c.cancel(batch_id)
    console.print(f"{batch['id']}: {batch['status']}")


def register(app: typer.Typer) -> None:
    app.command()(status)
    app.command("list")(list_)
    app.command()(download)
    app.command()(results)
    app.command()(cancel)
