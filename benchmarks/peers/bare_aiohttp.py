"""The floor: one asyncio loop, one aiohttp session, `concurrency` coroutines pulling lines.

    python -m benchmarks.peers.bare_aiohttp --url http://127.0.0.1:8099 --input in.jsonl \
        --output out.jsonl --concurrency 64

No retries, no limits beyond the connection pool, no database: the least work a program can do
to call an OpenAI-compatible server for every line of a batch file and keep the answers. It
parses each response as JSON and writes one output line per request, as batchgate does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from benchmarks.peers.common import bare_loop, parse_args


async def main() -> None:
    args = parse_args(__doc__ or "")
    url = args.url.rstrip("/") + "/v1/chat/completions"
    headers = {"Authorization": "Bearer sk-bench-key"}
    connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call(body: dict[str, Any]) -> tuple[int, Any]:
            async with session.post(url, json=body, headers=headers) as r:
                return r.status, await r.json()

        await bare_loop("bare aiohttp loop", args, call)


if __name__ == "__main__":
    asyncio.run(main())
