"""The API's serving process: what `batchgate serve` execs into (same pid) once it has checked
the config and keys and migrated the database.

It imports only what serving needs: the CLI's modules (Typer, Rich, httpx, ...) and Alembic
stay in the process that did the checks, ~16 MB of the ~113 MB an idle API held (issue 19: API
peak RSS ≤ 150 MB on a 1M-line batch). Its settings come from the environment (`server_env`),
as `batchgate up` passes them to every child, and the address from argv.
"""

from __future__ import annotations

import argparse
import logging
import sys

from batchgate.memory import return_big_blocks
from batchgate.settings import Settings

MODULE = "batchgate.api.server"
# What `batchgate serve` may have taken from flags or from a running `up` rather than the
# environment: passed on in the environment, which is where this process reads its settings.
_PASSED = ("config", "data_dir", "redis_url", "broker_url", "database_url")


def server_env(settings: Settings) -> dict[str, str]:
    """The `BATCHGATE_*` variables under which `Settings()` in the server reads `settings`."""
    env = {}
    for name in _PASSED:
        value = getattr(settings, name)
        if value is not None:
            env[f"BATCHGATE_{name.upper()}"] = str(value)
    return env


def server_argv(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", MODULE, "--host", host, "--port", str(port)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=MODULE, description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    return_big_blocks()
    # As `batchgate.cli.main` sets it up for every command.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    import uvicorn

    from batchgate import redaction
    from batchgate.api.app import create_app
    from batchgate.config import load_config

    settings = Settings()
    if settings.config is None:
        sys.exit(f"{MODULE}: BATCHGATE_CONFIG is not set (start it with `batchgate serve`)")
    config = load_config(settings.config)
    redaction.install(config)
    app = create_app(settings, config, migrate_schema=False)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
