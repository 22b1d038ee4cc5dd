"""External stores for a benchmark run: a fresh PostgreSQL database per system, created on the
server `--database-url` names and dropped afterwards, and a Redis database emptied before each
system. The database named in the URL (often a shared `test`) is only connected to, never
changed: every table the run writes lives in a `bench_<random>` database of its own.

A server running with `autovacuum = off` (this machine's) never clears the dead row versions
that every claim and outcome leave: a million-line batch then slows to a stall (Run D). While
such a server serves a benchmark database, a stand-in vacuums and analyzes it as a default
server's autovacuum would (its thresholds and its throttle), and says so.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import threading
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
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        try:
            with _stand_in_autovacuum(url):
                yield url
        finally:
            with admin.connect() as conn:
                # Pool connections of the stopped system may linger a moment.
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# autovacuum's defaults: a table is vacuumed once its dead rows pass 50 + 20% of its rows; the
# launcher looks every minute (autovacuum_naptime), we look more often on smaller runs. Its
# vacuums are throttled (autovacuum_vacuum_cost_delay 2 ms per 200 cost units) and so is ours:
# an unthrottled VACUUM of a million-row table competes with the run for the disk and the CPU.
_VACUUM_BASE, _VACUUM_SCALE, _LOOK_EVERY = 50, 0.2, 5.0
# ... and analyzed once the rows changed since its last ANALYZE (inserts too) pass 50 + 10%:
# without it the planner plans the claims on a just-filled million-row table as on an empty one.
_ANALYZE_BASE, _ANALYZE_SCALE = 50, 0.1
_DEAD = """SELECT relname, n_live_tup, n_dead_tup, n_mod_since_analyze FROM pg_stat_user_tables"""


@contextlib.contextmanager
def _stand_in_autovacuum(url: str) -> Iterator[None]:
    admin = _admin(url)
    with admin.connect() as conn:
        on = conn.execute(text("SHOW autovacuum")).scalar() == "on"
    if on:
        admin.dispose()
        yield
        return
    print("  (this PostgreSQL server has autovacuum off: the benchmark vacuums as it would)",
          file=sys.stderr)  # fmt: skip
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(_LOOK_EVERY):
            try:
                with admin.connect() as conn:
                    conn.execute(text("SET vacuum_cost_delay = '2ms'"))
                    conn.execute(text("SET vacuum_cost_limit = 200"))
                    for table, live, dead, changed in conn.execute(text(_DEAD)).all():
                        if dead > _VACUUM_BASE + _VACUUM_SCALE * live:
                            conn.execute(text(f'VACUUM (ANALYZE) "{table}"'))
                        elif changed > _ANALYZE_BASE + _ANALYZE_SCALE * live:
                            conn.execute(text(f'ANALYZE "{table}"'))
            except Exception as exc:  # the database may be going away with its system
                print(f"  (stand-in vacuum: {type(exc).__name__})", file=sys.stderr)

    thread = threading.Thread(target=run, name="stand-in-autovacuum", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
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
