"""`batchgate estimate`: the expected cost range of a file, offline, before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from batchgate.cli.common import console, fail
from batchgate.config import load_config
from batchgate.errors import ConfigError
from batchgate.pipeline.estimate import InvalidFile, estimate_file
from batchgate.settings import get_settings


def estimate(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="OpenAI batch JSONL file."),
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
    path = config or get_settings().config
    if path is None:
        raise fail("no config: pass --config FILE or set BATCHGATE_CONFIG")
    try:
        result = estimate_file(load_config(path), lambda: file.open("rb"), None, model=model)
    except ConfigError as exc:
        raise fail(exc) from None
    except InvalidFile as exc:
        for e in exc.errors[:20]:
            console.print(f"  line {e.line}: {e.code}: {e.message}", soft_wrap=True)
        raise fail(f"{file} is not a valid batch file") from None
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
        f"total {result['cost_usd_low']} – {result['cost_usd_high']} USD online; "
        f"{result['vendor_batch_cost_usd_low']} – {result['vendor_batch_cost_usd_high']} USD "
        f"through the vendors' batch APIs (--vendor-batch). {result['note']}"
    )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(estimate)
