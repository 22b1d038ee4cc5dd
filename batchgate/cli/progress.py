"""Rich progress while a batch runs, and the summary table when it ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

TERMINAL = {"completed", "failed", "expired", "cancelled"}


def wait_with_progress(
    fetch: Callable[[], dict[str, Any]],
    console: Console,
    interval: float = 0.5,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Poll a batch until it ends, showing done/failed/in-flight, rate, ETA and cost so far."""
    start = time.monotonic()
    batch = fetch()
    columns = (
        TextColumn("[bold]{task.fields[status]}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TextColumn(
            "failed {task.fields[failed]}  in-flight {task.fields[in_flight]}{task.fields[vendor]}"
        ),
        TextColumn("{task.fields[rate]}/s  ${task.fields[cost]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(
            "batch",
            total=None,
            status=batch["status"],
            count="",
            failed=0,
            in_flight=0,
            vendor="",
            rate="0",
            cost="0",
        )
        while True:
            counts = batch["request_counts"]
            done = counts["completed"] + counts["failed"]
            elapsed = max(1e-6, time.monotonic() - start)
            progress.update(
                task,
                total=counts["total"] or None,
                completed=done,
                # No total yet while the file is validated (none at all if it is refused).
                count=f"{done}/{counts['total']}" if counts["total"] else "",
                status=batch["status"],
                failed=counts["failed"],
                in_flight=(batch.get("batchgate") or {}).get("in_flight", 0),
                vendor=_vendor_waiting(batch),
                rate=f"{done / elapsed:.0f}",
                cost=_short(batch.get("cost_usd", "0")),
            )
            if batch["status"] in TERMINAL:
                return batch
            if timeout is not None and time.monotonic() - start > timeout:
                raise TimeoutError(f"batch {batch['id']} still {batch['status']} after {timeout}s")
            time.sleep(interval)
            batch = fetch()


def _vendor_waiting(batch: dict[str, Any]) -> str:
    waiting = (batch.get("batchgate") or {}).get("waiting_on_vendor")
    return f"  at vendor batch APIs {waiting}" if waiting else ""


def vendor_jobs_table(batch: dict[str, Any]) -> Table | None:
    """The batch's vendor jobs and the lines each still holds (None: it has none)."""
    jobs = (batch.get("batchgate") or {}).get("vendor_jobs")
    if not jobs:
        return None
    table = Table(title="vendor batch jobs")
    for name, justify in (("job", "left"), ("vendor", "left"), ("vendor job", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("status")
    table.add_column("lines", justify="right")
    table.add_column("waiting", justify="right")
    for j in jobs:
        status = j["status"] + (f" ({j['vendor_status']})" if j.get("vendor_status") else "")
        table.add_row(
            j.get("id") or "-",
            j.get("vendor") or "-",
            j.get("vendor_job_id") or "-",
            status,
            str(j.get("lines", "")),
            str(j["waiting"]),
        )
    return table


def _short(usd: str) -> str:
    try:
        return f"{float(usd):.6f}"
    except ValueError:
        return usd


def summary_table(batch: dict[str, Any]) -> Table:
    counts = batch["request_counts"]
    ext = batch.get("batchgate") or {}
    table = Table(title=f"batch {batch['id']} — {batch['status']}", show_footer=True)
    table.add_column("model", footer="total")
    table.add_column("lines", justify="right", footer=str(counts["completed"]))
    table.add_column("calls", justify="right")
    table.add_column("input tok", justify="right")
    table.add_column("output tok", justify="right")
    table.add_column("cost USD", justify="right", footer=batch.get("cost_usd", "0"))
    for alias, m in sorted((ext.get("models") or {}).items()):
        cost = m["cost_usd"] + (" (unpriced)" if m.get("unpriced") else "")
        table.add_row(
            alias,
            str(m["lines"]),
            str(m["calls"]),
            str(m["input_tokens"]),
            str(m["output_tokens"]),
            cost,
        )
    return table


def summary_line(batch: dict[str, Any]) -> str:
    counts = batch["request_counts"]
    ext = batch.get("batchgate") or {}
    parts = [
        f"lines {counts['total']}",
        f"succeeded {counts['completed']}",
        f"failed {counts['failed']}",
        f"served by a fallback {ext.get('fallback_lines', 0)}",
    ]
    if ext.get("budget_exceeded_lines"):
        parts.append(f"not run (budget) {ext['budget_exceeded_lines']}")
    if ext.get("cache_hits"):
        parts.append(f"from cache {ext['cache_hits']} (saved {ext['cache_saved_usd']} USD)")
    if ext.get("duplicate_calls"):
        parts.append(f"duplicate calls {ext['duplicate_calls']}")
    parts.append(f"cost {batch.get('cost_usd', '0')} USD")
    lanes = ext.get("lanes") or {}
    if lanes.get("vendor_batch", {}).get("lines"):
        vb, online = lanes["vendor_batch"], lanes["online"]
        parts.append(
            f"vendor batch lane {vb['lines']} lines {vb['cost_usd']} USD, online "
            f"{online['lines']} lines {online['cost_usd']} USD, "
            f"saved {lanes['vendor_batch_saving_usd']} USD"
        )
    return ", ".join(parts)
