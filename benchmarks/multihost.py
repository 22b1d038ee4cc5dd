"""Workers on one host vs two, across network-namespace hosts (issue 20's scaling benchmark).

    sudo python benchmarks/multihost.py [--lines N] [--zero-lines N] [--repeat N]

Host A runs the simulator, the API and the reconciler; one or two worker hosts each run an
OpenAI worker group; PostgreSQL (`--database-url`, on loopback: relayed by socat) and an
embedded Valkey are reached over the virtual network. Two scenarios, each with 1 and 2 worker
hosts in the same run:
  latency   200 ms, vendor limit 256: vendor-side lines/s vs C/L (target >= 0.95 for both: the
            vendor limit is the ceiling, wherever the workers run)
  zero      zero latency, limit 64: end-to-end lines/s (target: two hosts no slower than one),
            twice: each host with 2 pool processes (so two hosts run twice the processes on
            the same cores), and with the pool processes split (2 on one host, 1 + 1 on two)
Both hosts share this machine's 2 cores, so the zero-latency figure shows what coordination
across hosts costs, not what a second machine's CPU would add. Each run reports the CPU
seconds per line of every part (host/process and its children, PostgreSQL's server, Valkey,
socat relaying PostgreSQL to the hosts, and this process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from batchgate.broker import start_valkey  # noqa: E402
from batchgate.routing.epoch import begin_epoch  # noqa: E402
from benchmarks._backends import fresh_postgres  # noqa: E402
from benchmarks._system import Sampler  # noqa: E402
from tests.e2e.harness import TERMINAL, wait_for  # noqa: E402
from tests.multihost.cluster import Cluster  # noqa: E402
from tests.multihost.netns import Network, unavailable  # noqa: E402

DEFAULT_PG = "postgresql://root@127.0.0.1:5432/test"


def _postmaster() -> int | None:
    """The PostgreSQL server's parent process: its children are the sessions serving us."""
    for p in psutil.process_iter(["name", "ppid"]):
        if p.info["name"] == "postgres" and p.info["ppid"] == 1:
            return p.pid
    return None


def _cpu_per_line(sampler: Sampler, lines: int) -> dict[str, float]:
    """CPU ms per line by part, largest first; `*/child` are a process's children."""
    roles = sampler.by_role()
    return {
        role: round(r["cpu_s"] * 1000 / lines, 3)
        for role, r in sorted(roles.items(), key=lambda kv: -kv[1]["cpu_s"])
        if r["cpu_s"] > 0
    }


def _mean_in_flight(ledger: list[dict[str, Any]], trim: float) -> float:
    """Calls in flight at the vendor, averaged over the span without its first and last
    `trim` share (the start's synchronised waves, the tail): the steady state."""
    t0 = min(e["t_start"] for e in ledger)
    t1 = max(e["t_end"] for e in ledger)
    lo, hi = t0 + trim * (t1 - t0), t1 - trim * (t1 - t0)
    busy = sum(max(0.0, min(e["t_end"], hi) - max(e["t_start"], lo)) for e in ledger)
    return busy / (hi - lo)


def run(
    pg_base: str,
    worker_hosts: int,
    limit: int,
    latency_ms: float,
    lines: int,
    worker_concurrency: int = 2,
) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bg-multihost-"))
    with fresh_postgres(pg_base) as url:
        return _run(root, url, worker_hosts, limit, latency_ms, lines, worker_concurrency)


def _run(
    root: Path,
    url: str,
    worker_hosts: int,
    limit: int,
    latency_ms: float,
    lines: int,
    worker_concurrency: int,
) -> dict[str, Any]:
    net = Network()
    redis_url, valkey = start_valkey(root / "redis", bind=net.gateway)
    begin_epoch(redis_url)  # fresh, no worker yet: no restart grace
    try:
        cluster = Cluster(
            net,
            root,
            url,
            redis_url,
            limit=limit,
            latency_ms=latency_ms,
            worker_hosts=worker_hosts,
            quick_failover=False,  # leases, reconciler rounds: the defaults, as deployed
            worker_concurrency=worker_concurrency,
        )
        cluster.start()
        roots = [*cluster.roles, ("valkey", valkey.pid), ("driver", os.getpid())]
        roots += [("relay", fwd.pid) for fwd in net.forwarders if fwd.pid is not None]
        if (postmaster := _postmaster()) is not None:
            roots.append(("postgres", postmaster))
        # CPU only needs the first and last looks; a faster sampler cost 0.17 ms a line.
        sampler = Sampler(lambda: roots, interval=1.0).start()
        t0 = time.monotonic()
        batch_id, _ = cluster.submit(lines, "bench")
        done = wait_for(
            lambda: (b := cluster.batch(batch_id))["status"] in TERMINAL and b,
            1800,
            "the batch",
            interval=0.5,
        )
        wall = time.monotonic() - t0
        sampler.stop()
        ledger = [e for e in cluster.ledger() if e["status"] == 200]
        span = max(e["t_end"] for e in ledger) - min(e["t_start"] for e in ledger)
        hosts = {h.address: h.name for h in cluster.workers}
        per_host: dict[str, int] = {}
        for e in ledger:
            per_host[hosts.get(e["client"], e["client"])] = (
                per_host.get(hosts.get(e["client"], e["client"]), 0) + 1
            )
        out = {
            "worker_hosts": worker_hosts,
            "pool_processes_per_host": worker_concurrency,
            "limit": limit,
            "latency_ms": latency_ms,
            "lines": lines,
            "status": done["status"],
            "wall_s": round(wall, 2),
            "lines_per_s": round(lines / wall, 1),
            "vendor_side_lines_per_s": round(len(ledger) / span, 1),
            "peak_in_flight": cluster.peak(),
            "per_host": per_host,
            "cpu_ms_per_line": _cpu_per_line(sampler, lines),
            "machine_busy_cores": round(
                (sampler.busy1 - sampler.busy0) / (sampler.t1 - sampler.t0), 2
            ),
        }
        if latency_ms:
            ideal = limit / (latency_ms / 1000)
            out["efficiency_vendor_side"] = round(len(ledger) / span / ideal, 3)
            out["efficiency_end_to_end"] = round(lines / wall / ideal, 3)
            out["in_flight_steady"] = round(_mean_in_flight(ledger, 0.1), 1)
        return out
    finally:
        net.close()
        valkey.kill()
        valkey.wait()


LATENCY = {(1, 2): "1 host", (2, 2): "2 hosts"}
ZERO = {(1, 2): "1 host", (2, 2): "2 hosts", (2, 1): "2 hosts, pool split"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=20_000, help="lines of the 200 ms scenario")
    ap.add_argument("--zero-lines", type=int, default=20_000, help="lines at zero latency")
    ap.add_argument(
        "--repeat", type=int, default=3, help="rounds, each running every setup once in turn"
    )
    ap.add_argument("--database-url", default=DEFAULT_PG)
    args = ap.parse_args()
    why = unavailable()
    if why:
        sys.exit(f"cannot run: {why}")
    seen: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.repeat):
        for (hosts, per_host), name in LATENCY.items():
            out = run(args.database_url, hosts, 256, 200, args.lines, per_host)
            seen.setdefault(f"200 ms, limit 256, {name}", []).append(out)
            print(json.dumps(out), flush=True)
        for (hosts, per_host), name in ZERO.items():
            out = run(args.database_url, hosts, 64, 0, args.zero_lines, per_host)
            seen.setdefault(f"zero latency, limit 64, {name}", []).append(out)
            print(json.dumps(out), flush=True)
    print("medians:")
    for setup, runs in seen.items():
        figures = {k: statistics.median(r[k] for r in runs) for k in _SUMMARY if k in runs[0]}
        print(f"  {setup}: {json.dumps(figures)}")
    one = statistics.median(r["lines_per_s"] for r in seen["zero latency, limit 64, 1 host"])
    for name in ("2 hosts", "2 hosts, pool split"):
        two = statistics.median(r["lines_per_s"] for r in seen[f"zero latency, limit 64, {name}"])
        print(f"zero latency, {name} / 1 host: {two / one:.2f} (end to end, medians)")


_SUMMARY = ("lines_per_s", "vendor_side_lines_per_s", "efficiency_vendor_side",
            "efficiency_end_to_end", "in_flight_steady", "machine_busy_cores")  # fmt: skip


if __name__ == "__main__":
    main()
