"""Commands that run parts of the system: up, serve, worker, reconciler, flower, simulate."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys
from pathlib import Path

import typer

from batchgate import redaction
from batchgate.cli.common import err_console, fail
from batchgate.cli.db_cmds import migrate_or_exit
from batchgate.config import Config, load_config
from batchgate.errors import ConfigError
from batchgate.settings import Settings, get_settings

NO_KEYS = (
    "refusing to serve on a non-loopback address without API keys: set "
    "general_settings.master_key or batchgate_settings.tenants"
)
OPEN_WARNING = (
    "WARNING: no API key is configured (general_settings.master_key): anyone who can reach "
    "{url} can run batches on your vendor keys"
)
FLOWER_AUTH = "set BATCHGATE_FLOWER_BASIC_AUTH=user:pass"
CONFIG_HELP = "LiteLLM-style config.yaml (model_list, router_settings, batchgate_settings)."
CONFIG = typer.Option(None, "--config", "-c", help=CONFIG_HELP)
DATA_DIR = typer.Option(
    None,
    "--data-dir",
    help="Data dir (default BATCHGATE_DATA_DIR or .batchgate); a running `batchgate up` on it "
    "is found there, with its broker and database.",
)
EXIT_CONFIG = 2


def _settings(config: Path | None, data_dir: Path | None) -> Settings:
    overrides: dict[str, object] = {}
    if config is not None:
        overrides["config"] = config
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return get_settings().model_copy(update=overrides)


def _attached(settings: Settings) -> Settings:
    """A process started on its own: with no broker URL set, use the running `up`'s (found
    through its data dir), or say what to set. The environment is updated too, so everything
    this process imports or starts reads the same."""
    if settings.redis_url:
        return settings
    from batchgate.supervisor import RUN_RECORD, read_run_record

    data_dir = settings.data_dir.resolve()
    record = read_run_record(data_dir)
    if record is None:
        raise fail(
            f"no broker: BATCHGATE_REDIS_URL is not set and no `batchgate up` is running on "
            f"{data_dir} (no live {RUN_RECORD} there). Start this with the --data-dir of a "
            "running `batchgate up`, or set BATCHGATE_REDIS_URL (and BATCHGATE_DATABASE_URL).",
            EXIT_CONFIG,
        )
    env = {"BATCHGATE_REDIS_URL": record["redis_url"], "BATCHGATE_DATA_DIR": str(data_dir)}
    if record.get("broker_url") and not settings.broker_url:
        env["BATCHGATE_BROKER_URL"] = record["broker_url"]
    if not settings.database_url:
        env["BATCHGATE_DATABASE_URL"] = record["database_url"]
    os.environ.update(env)
    get_settings.cache_clear()
    return settings.model_copy(
        update={
            "redis_url": record["redis_url"],
            "broker_url": settings.broker_url or record.get("broker_url"),
            "database_url": settings.database_url or record["database_url"],
            "data_dir": data_dir,
        }
    )


def _load(settings: Settings) -> Config:
    if settings.config is None:
        raise fail("no config: pass --config FILE or set BATCHGATE_CONFIG", EXIT_CONFIG)
    try:
        config = load_config(settings.config)
    except ConfigError as exc:
        raise fail(f"config error: {exc}", EXIT_CONFIG) from None
    redaction.install(config)
    return config


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_keys(config: Config, host: str, port: int) -> None:
    """Refuse to serve when a configured key's variable is unset, or with no keys off loopback;
    warn loudly with no keys on loopback."""
    from batchgate.api.auth import KeyRing

    try:
        ring = KeyRing(config)
    except ConfigError as exc:
        raise fail(f"config error: {exc}", EXIT_CONFIG) from None
    if not ring.open:
        return
    if not _is_loopback(host):
        raise fail(NO_KEYS, EXIT_CONFIG)
    err_console.print(
        OPEN_WARNING.format(url=f"http://{host}:{port}"),
        style="bold yellow",
        soft_wrap=True,
        highlight=False,
    )


def _check_port(host: str, port: int, what: str) -> None:
    """Fail now on a port in use, rather than start a server that dies (and is restarted) on it."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise fail(
                f"cannot listen on {host}:{port} for the {what}: {exc.strerror}. Is another "
                "`batchgate up` running? Pick another --port."
            ) from None


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
    restarted, the embedded broker too; Ctrl-C (SIGINT) or SIGTERM stops everything, and if `up`
    itself is killed its children stop with it. One `up` per data dir: a second one refuses to
    start. Other batchgate commands started with the same --data-dir find this broker and
    database.

    Example:  batchgate up --config samples/config.simulator.yaml --port 8000
    """
    from batchgate.supervisor import DataDirInUse, Supervisor

    settings = _settings(config, data_dir)
    cfg = _load(settings)
    _check_keys(cfg, host, port)
    if flower_port and not settings.flower_basic_auth:
        raise fail(f"--flower-port needs basic auth: {FLOWER_AUTH}", EXIT_CONFIG)
    _check_port(host, port, "API")
    if flower_port:
        _check_port("127.0.0.1", flower_port, "Flower")
    migrate_or_exit(settings)  # once, before any child opens the database
    sup = Supervisor(settings, cfg, config, host=host, port=port, flower_port=flower_port)
    signal.signal(signal.SIGTERM, lambda *_: sup.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: sup.stopping.set())
    try:
        sup.start()
    except DataDirInUse as exc:
        sup.stop()
        raise fail(exc, EXIT_CONFIG) from None
    typer.echo(f"batchgate up: API on http://{host}:{port}  vendors: {', '.join(cfg.vendors)}")
    try:
        sup.watch()
    finally:
        sup.stop()


def serve(
    config: Path | None = CONFIG,
    host: str = typer.Option("127.0.0.1", help="Bind address."),
    port: int = typer.Option(8000, help="Port."),
    data_dir: Path | None = DATA_DIR,
) -> None:
    """Run the HTTP API only (broker: BATCHGATE_REDIS_URL, or a running `up` on --data-dir).

    Example:  batchgate serve --data-dir .batchgate --port 8001
    """
    from batchgate.api.server import server_argv, server_env

    settings = _settings(config, data_dir)
    _check_keys(_load(settings), host, port)
    settings = _attached(settings)
    migrate_or_exit(settings)
    # The checks above need the CLI and Alembic; serving needs neither: the same process (pid,
    # signals, process group) goes on as the lean server, ~16 MB smaller (batchgate.api.server).
    sys.stdout.flush()
    sys.stderr.flush()
    argv = server_argv(host, port)
    os.execve(argv[0], argv, {**os.environ, **server_env(settings)})


def worker(
    vendor: str = typer.Option(
        ..., "--vendor", "-v", help="Vendor queue to consume (e.g. openai)."
    ),
    concurrency: int | None = typer.Option(None, help="Worker processes (default from config)."),
    config: Path | None = CONFIG,
    data_dir: Path | None = DATA_DIR,
    loglevel: str = typer.Option("WARNING", help="Celery log level."),
) -> None:
    """Run one vendor's Celery worker (same as: celery -A workers worker -Q VENDOR).

    Example:  batchgate worker --vendor openai --data-dir .batchgate
    """
    settings = _attached(_settings(config, data_dir))
    cfg = _load(settings)
    if config is not None:
        os.environ["BATCHGATE_CONFIG"] = str(config.resolve())
    if vendor not in cfg.vendors:
        raise fail(
            f"vendor {vendor!r} has no model in the config ({', '.join(cfg.vendors)})",
            EXIT_CONFIG,
        )
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


def reconciler(config: Path | None = CONFIG, data_dir: Path | None = DATA_DIR) -> None:
    """Run the reconciler: re-enqueue lost work, release dead leases, expire and finalize."""
    settings = _attached(_settings(config, data_dir))
    from workers.reconciler import run_forever  # builds the Celery app: after `_attached`

    cfg = _load(settings)
    migrate_or_exit(settings)
    run_forever(settings, cfg)


def flower(
    port: int = typer.Option(5555, help="Flower port."),
    address: str = typer.Option("127.0.0.1", help="Flower bind address."),
    data_dir: Path | None = DATA_DIR,
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Serve without basic auth (loopback addresses only)."
    ),
) -> None:
    """Run Flower on the broker, behind basic auth (BATCHGATE_FLOWER_BASIC_AUTH=user:pass).

    Example:  BATCHGATE_FLOWER_BASIC_AUTH=ops:secret batchgate flower --data-dir .batchgate
    """
    settings = _attached(_settings(None, data_dir))
    auth = settings.flower_basic_auth
    if not auth and not (no_auth and _is_loopback(address)):
        raise fail(
            f"refusing to start Flower without basic auth: {FLOWER_AUTH} "
            "(or, on a loopback address only, pass --no-auth)",
            EXIT_CONFIG,
        )
    from workers import app as celery_app

    argv = ["flower", f"--port={port}", f"--address={address}"]
    if auth:
        argv.append(f"--basic-auth={auth}")
    celery_app.start(argv)


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


def register(app: typer.Typer) -> None:
    for command in (up, serve, worker, reconciler, flower, simulate):
        app.command()(command)
