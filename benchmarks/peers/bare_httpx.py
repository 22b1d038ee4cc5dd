"""The DESIGN's floor: the bare loop of `bare_aiohttp.py`, on httpx (with `httpx_aiohttp`'s
transport: stock httpx's pool collapses at this concurrency, research/performance.md).

    python -m benchmarks.peers.bare_httpx --url http://127.0.0.1:8099 --input in.jsonl \
        --output out.jsonl --concurrency 64

DESIGN.md states the overhead target against "a bare asyncio + httpx loop"; issue 9 against the
fastest client (aiohttp). The suite reports both; the aiohttp one is the headline.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from httpx_aiohttp import AiohttpTransport

from benchmarks.peers.common import bare_loop, parse_args


async def main() -> None:
    args = parse_args(__doc__ or "")
    url = args.url.rstrip("/") + "/v1/chat/completions"
    headers = {"Authorization": "Bearer sk-bench-key"}
    n = args.concurrency
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    transport = AiohttpTransport(limits=limits)
    async with httpx.AsyncClient(transport=transport, timeout=60, trust_env=False) as client:

        async def call(body: dict[str, Any]) -> tuple[int, Any]:
            r = await client.post(url, json=body, headers=headers)
            return r.status_code, r.json()

        await bare_loop("bare httpx loop", args, call)


if __name__ == "__main__":
    asyncio.run(main())
