"""Time to recover from SIGKILL of every worker process mid-batch (default lease and reconciler
settings, so the dead workers' leases are either waited out or released on their death).

    python benchmarks/recovery.py [--lines 500] [--latency-ms 150] [--limit 16] \\
        [--database-url postgresql://root@127.0.0.1:5432/test] [--redis-url redis://...]

Prints the batch's end-to-end seconds, the ideal (lines x latency / limit), and the seconds from
the kill to the batch's end.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchgate.broker import start_valkey  # after the path is set
from batchgate.routing.epoch import begin_epoch
from batchgate.simulator import start_in_thread
from tests.e2e.harness import System, chat_lines, sim_config, wait_for, write_jsonl


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=150)
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--show-logs", action="store_true", help="print the processes' logs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="recovery-") as tmp:
        root = Path(tmp)
        db_name = ""
        if args.database_url:
            import psycopg

            db_name = f"recovery_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{db_name}"')
            url = f"{args.database_url.rpartition('/')[0]}/{db_name}"
        else:
            url = f"sqlite:///{root / 'batchgate.db'}"
        valkey = None
        redis_url = args.redis_url
        if not redis_url:
            redis_url, valkey = start_valkey(root / "broker")
        else:
            import redis

            redis.Redis.from_url(redis_url).flushdb()
        begin_epoch(redis_url)  # no worker yet: no restart grace
        sim = start_in_thread({"default": {"latency_ms": args.latency_ms}})
        config = sim_config(sim.base_url, {"m": "openai/gpt-4o-mini"})
        config["batchgate_settings"] = {
            "vendors": {"openai": {"max_concurrency": args.limit, "worker_concurrency": 2}}
        }
        system = System(root / "sys", config, redis_url, url)
        try:
            system.start()
            lines = chat_lines(args.lines, "m")
            started = time.monotonic()
            batch = system.submit(write_jsonl(root / "in.jsonl", lines))

            def progress() -> int:
                with system.client() as c:
                    return c.batch(batch["id"])["request_counts"]["completed"]

            wait_for(lambda: progress() >= args.lines // 5, 300, "some progress")
            assert system.sup is not None
            worker = next(c for c in system.sup.children if c.name == "worker-openai")
            assert worker.proc is not None
            killed = time.monotonic()
            os.killpg(worker.proc.pid, signal.SIGKILL)  # the main process and its pool
            done = system.wait(batch["id"], timeout=900)
            ended = time.monotonic()
        finally:
            system.stop()
            if args.show_logs:
                print(system.logs())
            sim.stop()
            if valkey is not None:
                valkey.kill()
                valkey.wait()
            if db_name:
                import psycopg

                with psycopg.connect(args.database_url, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    ideal = args.lines * args.latency_ms / 1000 / args.limit
    print(
        f"{args.lines} lines, {args.latency_ms:.0f} ms, limit {args.limit}: {done['status']} in "
        f"{ended - started:.1f} s end to end (ideal {ideal:.1f} s); {ended - killed:.1f} s from "
        f"the SIGKILL of every worker process to the end; lost calls "
        f"{done['batchgate']['lost_calls']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
