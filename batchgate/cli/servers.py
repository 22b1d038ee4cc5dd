"""Commands that run parts of the system: up, serve, worker, reconciler, flower, simulate."""

from __future__ import annotations

import ipaddress
import os
import signal
from pathlib import Path

import typer

from batchgate import redaction
from batchgate.cli.db_cmds import migrate_or_exit
from batchgate.config import load_config
from batchgate.errors import ConfigError
from batchgate.settings import Settings, get_settings

NO_KEYS = (
    "refusing to serve on a non-loopback address without API keys: set "
    "general_settings.master_key or batchgate_settings.tenants"
)
CONFIG_HELP = "LiteLLM-style config.yaml (model_list, router_settings, batchgate_settings)."


def _settings(config: Path | None, data_dir: Path | None) -> Settings:
    overrides: dict[str, object] = {}
    if config is not None:
        overrides["config"] = config
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    base = get_settings()
    return base.model_copy(update=overrides)


def _load(settings: Settings):  # type: ignore[no-untyped-def]
    if settings.config is None:
        raise typer.BadParameter("no config: pass --config FILE or set BATCHGATE_CONFIG")
    try:
        config = load_config(settings.config)
    except ConfigError as exc:
        typer.secho(f"config error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    redaction.install(config)
    return config


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        config: Path = typer.Option(
            ..., "--config", "-c", help=CONFIG_HELP, exists=True, dir_okay=False
        ),
        host: str = typer.Option("127.0.0.1", help="API bind address."),
        port: int = typer.Option(8000, help="API port."),
        data_dir: Path = typer.Option(
            Path(".batchgate"), help="Database, files and embedded broker live here."
        ),
        flower_port: int | None = typer.Option(
            None, help="Also start Flower on this port (needs BATCHGATE_FLOWER_BASIC_AUTH)."
        ),
    ) -> None:
        """Run everything in the foreground: broker, database, API, workers per vendor, reconciler.

        With no BATCHGATE_REDIS_URL an embedded Valkey is started under the data dir; with no
        BATCHGATE_DATABASE_URL the database is SQLite under the data dir. A worker that dies is
        restarted, the embedded broker too; Ctrl-C (SIGINT) or SIGTERM stops everything, and if
        `up` itself is killed its children stop with it. One `up` per data dir: a second one
        refuses to start.

        Example:  batchgate up --config samples/config.simulator.yaml --port 8000
        """
        from batchgate.supervisor import DataDirInUse, Supervisor

        settings = _settings(config, data_dir)
        cfg = _load(settings)
        from batchgate.api.auth import KeyRing

        if not _is_loopback(host) and KeyRing(cfg).open:
            typer.secho(NO_KEYS, fg="red", err=True)
            raise typer.Exit(2)
        migrate_or_exit(settings)  # once, before any child opens the database
        sup = Supervisor(settings, cfg, config, host=host, port=port, flower_port=flower_port)
        signal.signal(signal.SIGTERM, lambda *_: sup.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: sup.stopping.set())
        try:
            sup.start()
        except DataDirInUse as exc:
            typer.secho(f"batchgate up: {exc}", fg="red", err=True)
            sup.stop()
            raise typer.Exit(2) from None
        typer.echo(f"batchgate up: API on http://{host}:{port}  vendors: {', '.join(cfg.vendors)}")
        try:
            sup.watch()
        finally:
            sup.stop()

    @app.command()
    def serve(
        config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
        host: str = typer.Option("127.0.0.1", help="Bind address."),
        port: int = typer.Option(8000, help="Port."),
        data_dir: Path | None = typer.Option(None, help="Data directory."),
    ) -> None:
        """Run the HTTP API only (needs BATCHGATE_REDIS_URL)."""
        import uvicorn

        from batchgate.api.app import create_app

        settings = _settings(config, data_dir)
        cfg = _load(settings)
        from batchgate.api.auth import KeyRing

        if not _is_loopback(host) and KeyRing(cfg).open:
            typer.secho(NO_KEYS, fg="red", err=True)
            raise typer.Exit(2)
        migrate_or_exit(settings)
        uvicorn.run(create_app(settings, cfg), host=host, port=port, log_level="warning")

    @app.command()
    def worker(
        vendor: str = typer.Option(
            ..., "--vendor", "-v", help="Vendor queue to consume (e.g. openai)."
        ),
        concurrency: int | None = typer.Option(
            None, help="Worker processes (default from config)."
        ),
        config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
        loglevel: str = typer.Option("WARNING", help="Celery log level."),
    ) -> None:
        """Run one vendor's Celery worker (same as: celery -A workers worker -Q VENDOR)."""
        settings = _settings(config, None)
        cfg = _load(settings)
        if config is not None:
            os.environ["BATCHGATE_CONFIG"] = str(config.resolve())
        if vendor not in cfg.vendors:
            typer.secho(
                f"vendor {vendor!r} has no model in the config ({', '.join(cfg.vendors)})",
                fg="red",
                err=True,
            )
            raise typer.Exit(2)
        migrate_or_exit(settings)
        n = concurrency or cfg.limits(vendor).worker_concurrency
        from workers import app as celery_app

        celery_app.worker_main(
            [
                "worker",
                "-Q",
                vendor,
                "-n",
                f"{vendor}@{settings.host_id}",
                "-c",
                str(n),
                "-P",
                "prefork",
                "-E",
                f"--loglevel={loglevel}",
                "--without-mingle",
                "--without-gossip",
            ]
        )

    @app.command()
    def reconciler(
        config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    ) -> None:
        """Run the reconciler: re-enqueue lost work, release dead leases, expire and finalize."""
        from workers.reconciler import run_forever

        settings = _settings(config, None)
        cfg = _load(settings)
        migrate_or_exit(settings)
        run_forever(settings, cfg)

    @app.command()
    def flower(
        port: int = typer.Option(5555, help="Flower port."),
        address: str = typer.Option("127.0.0.1", help="Flower bind address."),
    ) -> None:
        """Run Flower on the broker, behind basic auth (BATCHGATE_FLOWER_BASIC_AUTH=user:pass)."""
        settings = get_settings()
        auth = settings.flower_basic_auth
        if not auth and not _is_loopback(address):
            typer.secho(
                "refusing to serve Flower on a non-loopback address without auth",
                fg="red",
                err=True,
            )
            raise typer.Exit(2)
        from workers import app as celery_app

        argv = ["flower", f"--port={port}", f"--address={address}"]
        if auth:
            argv.append(f"--basic-auth={auth}")
        celery_app.start(argv)

    @app.command()
    def simulate(
        port: int = typer.Option(8099, help="Port."),
        host: str = typer.Option("127.0.0.1", help="Bind address."),
        behaviour: Path | None = typer.Option(
            None, "--config", help="Simulator behaviour YAML (see samples/simulator.yaml)."
        ),
    ) -> None:
        """Run the provider simulator: OpenAI, Azure, Anthropic and Gemini wire formats, no keys.

        Example:  batchgate simulate --port 8099 --config samples/simulator.yaml
        """
        from batchgate.simulator import run

        run(host=host, port=port, behaviour_path=str(behaviour) if behaviour else None)
