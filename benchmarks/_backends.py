"""External stores for a benchmark run: a fresh PostgreSQL database per system, created on the
server `--database-url` names and dropped afterwards, and a Redis database emptied before each
system. The database named in the URL (often a shared `test`) is only connected to, never
changed: every table the run writes lives in a `bench_<random>` database of its own.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from batchgate.store.db import normalise_url


def _admin(server_url: str):  # type: ignore[no-untyped-def]
    # CREATE/DROP DATABASE cannot run inside a transaction.
    return create_engine(normalise_url(server_url), isolation_level="AUTOCOMMIT")


@contextlib.contextmanager
def fresh_postgres(server_url: str) -> Iterator[str]:
    """Yield the URL of a new, empty database `bench_<random>` on `server_url`'s server; drop
    that database (and only it) on exit."""
    name = f"bench_{secrets.token_hex(6)}"
    admin = _admin(server_url)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                # Pool connections of the stopped system may linger a moment.
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def flush_redis(url: str) -> None:
    """Empty the Redis database `url` names, so a system starts with no slots, queues or
    cooldowns left by the previous one (as a fresh embedded Valkey would)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
