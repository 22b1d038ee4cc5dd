"""The vendor batch lane at scale: N lines (half OpenAI, half Anthropic) offered to the
simulator's vendor batch APIs with a simulated processing delay.

    python benchmarks/vendor_batch.py [--lines 20000] [--delay-s 30] \\
        [--database-url postgresql://root@127.0.0.1:5432/test] [--redis-url redis://...]

Prints the batch's wall time (create → completed), the ideal (the processing delay), result
ingestion in lines/s per vendor job (as the lane logs it: download, parse, price and write of
every result line), and the peak RSS of each batchgate process (the reconciler runs the lane).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from batchgate.broker import start_valkey  # after the path is set
from batchgate.simulator import start_in_thread
from tests.e2e.harness import System, chat_lines, sim_config, write_jsonl

INGESTED = re.compile(r"(\d+) result lines written in ([\d.]+) s")


class PeakRss:
    """Peak RSS per supervisor child (with its pool processes), sampled every 0.2 s."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.peak: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        assert self.system.sup is not None
        while not self.stop.wait(0.2):
            for child in self.system.sup.children:
                if child.proc is None:
                    continue
                try:
                    root = psutil.Process(child.proc.pid)
                    procs = [root, *root.children(recursive=True)]
                    rss = max(p.memory_info().rss for p in procs)
                except psutil.Error:
                    continue
                self.peak[child.name] = max(self.peak.get(child.name, 0), rss)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--delay-s", type=float, default=30.0)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vendor-batch-") as tmp:
        root = Path(tmp)
        db_name = ""
        if args.database_url:
            import psycopg

            db_name = f"vbatch_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{db_name}"')
            url = f"{args.database_url.rpartition('/')[0]}/{db_name}"
        else:
            url = f"sqlite:///{root / 'batchgate.db'}"
        valkey = None
        redis_url = args.redis_url
        if not redis_url:
            redis_url, valkey = start_valkey(root / "broker")
        sim = start_in_thread(
            {
                "models": {
                    "gpt-4o-mini": {"batch_delay_s": args.delay_s},
                    "claude-haiku-4-5": {"batch_delay_s": args.delay_s},
                }
            }
        )
        config = sim_config(
            sim.base_url, {"gpt": "openai/gpt-4o-mini", "claude": "anthropic/claude-haiku-4-5"}
        )
        config["batchgate_settings"] = {
            "vendor_batch": {"poll_interval": 1.0, "max_poll_interval": 2.0}
        }
        system = System(root / "sys", config, redis_url, url, env={"reconcile_interval": 0.5})
        half = args.lines // 2
        path = write_jsonl(
            root / "in.jsonl", chat_lines(half, "gpt", "g") + chat_lines(half, "claude", "c")
        )
        try:
            system.start()
            rss = PeakRss(system)
            rss.thread.start()
            with system.client() as c:
                f = c.upload(path)
                started = time.monotonic()
                batch = c.create_batch(f["id"], "/v1/chat/completions", vendor_batch=True)
                while True:
                    b = c.batch(batch["id"])
                    if b["status"] in ("completed", "failed", "expired", "cancelled"):
                        break
                    time.sleep(0.2)
            ended = time.monotonic()
            rss.stop.set()
        finally:
            system.stop()
            log = (root / "sys" / "logs" / "reconciler.log").read_text(errors="replace")
            ingests = [(int(m[1]), float(m[2])) for m in INGESTED.finditer(log) if int(m[1])]
            sim.stop()
            if valkey is not None:
                valkey.kill()
                valkey.wait()
            if db_name:
                import psycopg

                with psycopg.connect(args.database_url, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    total = b["request_counts"]["total"]
    lanes = b["batchgate"].get("lanes") or {}
    print(
        f"{total} lines, {args.delay_s:.0f} s vendor processing: {b['status']} in "
        f"{ended - started:.1f} s wall (ideal {args.delay_s:.0f} s + polling)"
    )
    for lines, took in ingests:
        print(
            f"result ingestion (one vendor job): {lines} lines in {took:.2f} s = "
            f"{lines / max(took, 1e-6):.0f} lines/s"
        )
    print("peak RSS: " + ", ".join(f"{k} {v / 2**20:.0f} MB" for k, v in sorted(rss.peak.items())))
    print(f"lanes: {lanes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
