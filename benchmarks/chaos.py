"""Many seeds of the chaos run (`tests/e2e/chaos.py`): faults at every boundary, then the books.

    python benchmarks/chaos.py --seeds 20                     # SQLite + embedded Valkey
    python benchmarks/chaos.py --seeds 20 \\
        --database-url postgresql://root@127.0.0.1:5432/test --redis-url redis://127.0.0.1:6379/1

Each seed gets a fresh database (a new PostgreSQL database on the server, dropped after) and
prints one line: faults injected by kind, calls, attempt rows, lost leases, duplicates, seconds,
and any broken invariant. Exit status 1 if any seed broke one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.chaos import ChaosReport, run_chaos  # after the path is set


def _fresh_database(base: str) -> tuple[str, str]:
    import psycopg

    name = f"chaos_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base.rpartition('/')[0]}/{name}", name


def _drop_database(base: str, name: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--database-url", help="PostgreSQL server (default: SQLite per seed)")
    parser.add_argument("--redis-url", help="Redis database to use (default: embedded Valkey)")
    args = parser.parse_args()

    reports: list[ChaosReport] = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        with tempfile.TemporaryDirectory(prefix=f"chaos-{seed}-") as tmp:
            root = Path(tmp)
            if args.database_url:
                url, name = _fresh_database(args.database_url)
            else:
                url, name = f"sqlite:///{root / 'batchgate.db'}", ""
            try:
                report = run_chaos(root, seed, args.lines, url, args.redis_url)
            finally:
                if name:
                    _drop_database(args.database_url, name)
        reports.append(report)
        print(report.line(), flush=True)

    faults: Counter[str] = Counter()
    for r in reports:
        faults.update(r.faults)
    broken = [r.seed for r in reports if r.violations]
    seconds = [r.seconds for r in reports]
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(faults.items()))
    print(
        f"\n{len(reports)} seeds [{reports[0].backend}], {args.lines} lines each: "
        f"{sum(faults.values())} faults ({kinds}); "
        f"{sum(r.lost_rows for r in reports)} lost leases, "
        f"{sum(r.duplicate_rows for r in reports)} duplicate rows, "
        f"{sum(r.unrecorded_calls for r in reports)} calls a crash kept off the rows; "
        f"{sum(seconds) / len(seconds):.1f} s per seed (min {min(seconds):.1f}, "
        f"max {max(seconds):.1f}); seeds with a broken invariant: {broken or 'none'}"
    )
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
