"""`batchgate demo`: the whole system on a fresh machine, with the simulator as the vendors."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import typer
from rich.console import Console

from batchgate.cli.progress import summary_line, summary_table, wait_with_progress
from batchgate.cli.submit import errors_path
from batchgate.client import Client
from batchgate.config import load_config
from batchgate.settings import get_settings

SAMPLES = Path(__file__).resolve().parents[1] / "samples"  # package data
DEMO_CONFIG = "config.demo.yaml"
DEMO_SIMULATOR = "simulator.demo.yaml"
DEMO_BATCH = "eval.jsonl"


def _samples_dir() -> Path:
    if (SAMPLES / DEMO_CONFIG).exists():
        return SAMPLES
    raise FileNotFoundError(f"demo samples not found under {SAMPLES}")


def wait_healthy(client: Client, vendors: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: dict[str, object] = {}
    while time.monotonic() < deadline:
        try:
            last = client.health()
            if last.get("ok") and (last.get("workers") or {}).get("ok"):  # type: ignore[union-attr]
                return
        except Exception as exc:  # not listening yet
            last = {"error": type(exc).__name__}
        time.sleep(0.2)
    raise TimeoutError(f"batchgate did not become healthy: {last}")


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        output: Path = typer.Option(
            Path("batchgate-demo-results.jsonl"), "-o", "--output", help="Merged results file."
        ),
        batch_file: Path | None = typer.Option(
            None, "--file", help=f"Batch to run (default samples/{DEMO_BATCH})."
        ),
        data_dir: Path | None = typer.Option(
            None, help="Keep data here (default: a temporary directory)."
        ),
        port: int = typer.Option(0, help="API port (0: a free port)."),
    ) -> None:
        """Run a sample batch end to end with no keys and no servers.

        Starts an embedded broker, SQLite, the API, one worker per vendor and the reconciler, with
        the simulator playing OpenAI, Anthropic and Gemini (OpenAI fails some requests, so some
        lines fall back), then submits a batch, shows progress and the cost table, and writes the
        merged results file.
        """
        from batchgate.broker import free_port
        from batchgate.simulator import load_behaviour, start_in_thread
        from batchgate.supervisor import Supervisor

        console = Console()
        samples = _samples_dir()
        tmp = Path(tempfile.mkdtemp(prefix="batchgate-demo-"))
        root = data_dir or tmp
        sim = start_in_thread(load_behaviour(samples / DEMO_SIMULATOR))
        config_path = root / "config.yaml"
        root.mkdir(parents=True, exist_ok=True)
        config_path.write_text(
            (samples / DEMO_CONFIG).read_text().replace("http://127.0.0.1:8099", sim.base_url)
        )
        config = load_config(config_path)
        settings = get_settings().model_copy(
            update={
                "data_dir": root / "data",
                "redis_url": None,
                "database_url": None,
                "config": config_path,
            }
        )
        port = port or free_port()
        sup = Supervisor(
            settings, config, config_path, port=port, log_dir=root / "logs", quiet=True
        )
        kept = (
            f"data in {root}"
            if data_dir is not None
            else "data in a temporary directory, deleted at exit (--data-dir DIR keeps it)"
        )
        console.print(f"[bold]batchgate demo[/bold]: simulator at {sim.base_url}, {kept}")
        try:
            sup.start()
            with Client(f"http://127.0.0.1:{port}") as client:
                wait_healthy(client, config.vendors)
                console.print(
                    f"API on http://127.0.0.1:{port}; workers: {', '.join(config.vendors)}"
                )
                path = batch_file or samples / DEMO_BATCH
                f = client.upload(path)
                batch = client.create_batch(f["id"], "/v1/chat/completions")
                console.print(f"submitted {path.name} as {batch['id']}")
                batch = wait_with_progress(
                    lambda: client.batch(batch["id"]), console, interval=0.3, timeout=600
                )
                console.print(summary_table(batch))
                console.print(summary_line(batch), soft_wrap=True)
                if batch.get("output_file_id"):
                    client.download(batch["output_file_id"], output)
                if batch.get("error_file_id"):
                    client.download(batch["error_file_id"], errors_path(output))
                console.print(f"merged results: [bold]{output}[/bold]")
                if batch["status"] != "completed":
                    raise typer.Exit(1)
        finally:
            sup.stop()
            sim.stop()
            if data_dir is None:
                shutil.rmtree(tmp, ignore_errors=True)
