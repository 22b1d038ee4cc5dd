"""The HTTP client under `providers/_http.py`: httpx on `httpx_aiohttp`'s transport vs aiohttp.

    python benchmarks/transport.py [--calls 20000] [--rounds 3]

One process, one event loop, 64 concurrent coroutines sending the same OpenAI chat request
to the provider simulator (zero latency, its own process) and reading the whole body, as
`send` does. Reports calls/s and this process's CPU per call for each client, alternating
the clients over several rounds so drift on the machine hits both alike. The simulator's
cost is the same for both, so the CPU per call is what the worker pays for the client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
from httpx_aiohttp import AiohttpTransport  # noqa: E402

from benchmarks._system import SimulatorProcess  # noqa: E402

CONCURRENCY = 64
BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "say hi"}]}
).encode()
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-sim-openai"}


async def _drive(calls: int, one: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for `calls` calls, CONCURRENCY at once."""
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - t0, time.process_time() - cpu0


async def via_httpx(url: str, calls: int) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        transport=AiohttpTransport(limits=limits), trust_env=False, timeout=60
    ) as client:

        async def one() -> None:
            async with client.stream("POST", url, headers=HEADERS, content=BODY) as r:
                buf = bytearray()
                async for chunk in r.aiter_bytes():
                    buf += chunk
                assert r.status_code == 200, r.status_code
                json.loads(buf)

        await one()  # connect outside the clock
        return await _drive(calls, one)


async def via_send(url: str, calls: int) -> tuple[float, float]:
    """What a worker pays per call: batchgate's `send` (adapter, deadline, byte cap, parsing)."""
    from batchgate.providers._http import make_client, send
    from batchgate.providers.base import ENDPOINT_CHAT, Target
    from batchgate.providers.registry import get_adapter

    adapter = get_adapter("openai")
    target = Target("openai", "gpt-4o-mini", url.removesuffix("/chat/completions"), "sk-sim-openai")
    body = json.loads(BODY)
    client = make_client(CONCURRENCY)
    try:

        async def one() -> None:
            await send(adapter, client, ENDPOINT_CHAT, body, target)

        await one()
        return await _drive(calls, one)
    finally:
        await client.close()


async def via_aiohttp(url: str, calls: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY, limit_per_host=0)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def one() -> None:
            async with session.post(url, headers=HEADERS, data=BODY) as r:
                buf = bytearray()
                async for chunk in r.content.iter_any():
                    buf += chunk
                assert r.status == 200, r.status
                json.loads(buf)

        await one()
        return await _drive(calls, one)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sim = SimulatorProcess(Path("/tmp") / f"bg-transport-{time.time_ns()}").start()
    try:
        url = sim.base_url + "/v1/chat/completions"
        clients = {
            "httpx + aiohttp transport": via_httpx,
            "aiohttp": via_aiohttp,
            "batchgate send() on aiohttp": via_send,
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for _ in range(args.rounds):
            for name, drive in clients.items():
                results[name].append(asyncio.run(drive(url, args.calls)))
    finally:
        sim.stop()
    print(f"{args.calls:,} calls per round, {args.rounds} rounds, concurrency {CONCURRENCY}")
    for name, runs in results.items():
        wall = sum(r[0] for r in runs)
        cpu = sum(r[1] for r in runs)
        n = args.calls * len(runs)
        print(f"  {name:26} {n / wall:7,.0f} calls/s   {1e6 * cpu / n:5.0f} µs CPU per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
