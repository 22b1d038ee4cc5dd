"""Client commands against a running API: submit, status, list, download, cancel."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import typer
from rich.console import Console

from batchgate.cli.progress import summary_line, summary_table, wait_with_progress
from batchgate.client import APIError, Client
from batchgate.settings import get_settings

API_BASE = typer.Option(
    None, "--api-base", help="API URL (default: BATCHGATE_API_BASE or http://127.0.0.1:8000)."
)


def _client(api_base: str | None) -> Client:
    s = get_settings()
    return Client(api_base or s.api_base, s.api_key)


def _first_url(path: Path) -> str:
    with open(path, "rb") as fp:
        for raw in fp:
            if raw.strip():
                try:
                    return json.loads(raw).get("url", "/v1/chat/completions")
                except (ValueError, AttributeError):
                    break
    return "/v1/chat/completions"


def register(app: typer.Typer) -> None:
    console = Console()

    def fail(exc: Exception) -> None:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1)

    @app.command()
    def submit(
        file: Path = typer.Argument(
            ..., exists=True, dir_okay=False, help="OpenAI batch JSONL file."
        ),
        model: str | None = typer.Option(None, help="Run every line on this model alias."),
        fallback: list[str] = typer.Option(
            [],
            "--fallback",
            help="Fallback model alias (repeatable, in order); replaces the config's fallbacks.",
        ),
        max_cost: Decimal | None = typer.Option(
            None, "--max-cost", help="Stop new calls once this many USD are spent."
        ),
        wait: bool = typer.Option(
            False, "--wait", help="Show progress until the batch ends, then a summary."
        ),
        output: Path | None = typer.Option(
            None, "-o", "--output", help="With --wait: write the results here."
        ),
        api_base: str | None = API_BASE,
    ) -> None:
        """Upload FILE and create a batch.

        Example:  batchgate submit samples/eval.jsonl --fallback claude-haiku --wait -o out.jsonl
        """
        try:
            with _client(api_base) as c:
                f = c.upload(file)
                batch = c.create_batch(
                    f["id"],
                    _first_url(file),
                    model=model,
                    fallbacks=list(fallback),
                    max_cost_usd=str(max_cost) if max_cost is not None else None,
                )
                console.print(f"batch [bold]{batch['id']}[/bold] created ({batch['status']})")
                if not wait:
                    return
                batch = wait_with_progress(lambda: c.batch(batch["id"]), console)
                console.print(summary_table(batch))
                console.print(summary_line(batch), soft_wrap=True)
                if batch.get("errors"):
                    for e in batch["errors"]["data"][:20]:
                        console.print(f"  line {e.get('line')}: {e['code']}: {e['message']}")
                if output is not None and batch.get("output_file_id"):
                    c.download(batch["output_file_id"], output)
                    console.print(f"results written to {output}")
        except APIError as exc:
            fail(exc)

    @app.command()
    def estimate(
        file: Path = typer.Argument(
            ..., exists=True, dir_okay=False, help="OpenAI batch JSONL file."
        ),
        config: Path | None = typer.Option(
            None, "--config", "-c", help="Config with the models (default BATCHGATE_CONFIG)."
        ),
        model: str | None = typer.Option(None, help="Price every line on this model alias."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Expected cost range per model, offline, before running anything.

        Input tokens ≈ characters/4; output between 0 and max_tokens (1024 when unset).

        Example:  batchgate estimate samples/eval.jsonl --config samples/config.real.yaml
        """
        from rich.table import Table

        from batchgate.config import load_config
        from batchgate.errors import ConfigError
        from batchgate.pipeline.estimate import InvalidFile, estimate_file

        path = config or get_settings().config
        if path is None:
            fail(RuntimeError("no config: pass --config FILE or set BATCHGATE_CONFIG"))
            return
        try:
            result = estimate_file(load_config(path), lambda: file.open("rb"), None, model=model)
        except ConfigError as exc:
            fail(exc)
            return
        except InvalidFile as exc:
            for e in exc.errors[:20]:
                console.print(f"  line {e.line}: {e.code}: {e.message}")
            fail(RuntimeError(f"{file} is not a valid batch file"))
            return
        if as_json:
            console.print_json(json.dumps(result))
            return
        table = Table(title=f"estimate for {file.name}: {result['lines']} lines")
        for col in ("model", "lines", "input tok (est)", "max output tok", "USD low", "USD high"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for alias, m in sorted(result["models"].items()):
            table.add_row(
                alias,
                str(m["lines"]),
                str(m["input_tokens_est"]),
                str(m["max_output_tokens"]),
                m["cost_low"],
                m["cost_high"] + (" (unpriced)" if m.get("unpriced") else ""),
            )
        table.caption = (
            f"total {result['cost_usd_low']} – {result['cost_usd_high']} USD. {result['note']}"
        )
        console.print(table)

    @app.command()
    def status(
        batch_id: str,
        api_base: str | None = API_BASE,
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Show a batch's status, counts and cost."""
        try:
            with _client(api_base) as c:
                batch = c.batch(batch_id)
        except APIError as exc:
            fail(exc)
            return
        if as_json:
            console.print_json(json.dumps(batch))
        else:
            console.print(summary_table(batch))
            console.print(summary_line(batch), soft_wrap=True)

    @app.command("list")
    def list_(
        limit: int = typer.Option(20, help="How many."), api_base: str | None = API_BASE
    ) -> None:
        """List recent batches."""
        try:
            with _client(api_base) as c:
                page = c.batches(limit=limit)
        except APIError as exc:
            fail(exc)
            return
        for b in page["data"]:
            rc = b["request_counts"]
            done = f"{rc['completed']}/{rc['total']}"
            console.print(
                f"{b['id']}  {b['status']:<11} {done} failed {rc['failed']}  ${b['cost_usd']}"
            )

    @app.command()
    def download(
        batch_id: str,
        output: Path = typer.Option(
            Path("results.jsonl"), "-o", "--output", help="Where to write."
        ),
        errors: bool = typer.Option(False, "--errors", help="Download the error file instead."),
        api_base: str | None = API_BASE,
    ) -> None:
        """Download a finished batch's results (or its error file with --errors)."""
        try:
            with _client(api_base) as c:
                batch = c.batch(batch_id)
                fid = batch["error_file_id"] if errors else batch["output_file_id"]
                if not fid:
                    fail(
                        RuntimeError(
                            f"batch is {batch['status']}: no {'error' if errors else 'output'} file"
                        )
                    )
                n = c.download(fid, output)
        except APIError as exc:
            fail(exc)
            return
        console.print(f"wrote {n} bytes to {output}")

    @app.command()
    def cancel(batch_id: str, api_base: str | None = API_BASE) -> None:
        """Cancel a batch: no new calls, in-flight ones finish, the rest end as cancelled."""
        try:
            with _client(api_base) as c:
                batch = c.cancel(batch_id)
        except APIError as exc:
            fail(exc)
            return
        console.print(f"{batch['id']}: {batch['status']}")
